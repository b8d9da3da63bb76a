package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/datadir"
)

// VerifyCommand checks that each captured layer's memory reproduces the layer.
type VerifyCommand struct {
	Data    string
	Samples int
	JSON    bool
	Repair  bool
}

func newVerifyCmd() *cobra.Command {
	c := &VerifyCommand{}
	cmd := &cobra.Command{
		Use:     "verify",
		Short:   "Check that each captured layer's memory reproduces the layer on held-out contexts",
		Example: "  spotlight verify --data ./d\n  spotlight verify --data ./d --samples 32 --json",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	cmd.Flags().StringVar(&c.Data, "data", "", "data directory")
	cmd.Flags().IntVar(&c.Samples, "samples", 8, "held-out contexts to check")
	cmd.Flags().BoolVar(&c.JSON, "json", false, "print one JSON document")
	cmd.Flags().BoolVar(&c.Repair, "repair", false, "when the segment files are damaged, write them again from the database")
	_ = cmd.MarkFlagRequired("data")
	return cmd
}

// Run verifies and prints the report; a layer over tolerance is an error.
func (c *VerifyCommand) Run(context.Context) error {
	dir, m, closeAll, err := openModel(c.Data)
	if isLocked(err) {
		// Verification reads every layer's whole memory; the server has no endpoint for it.
		return lockedError(c.Data, findServer(c.Data, tokenOr("")),
			"verify needs the directory itself (every answer of the server carries its dual_check)")
	}
	if err != nil {
		return err
	}
	defer closeAll()
	rep, err := dir.Verify(m, c.Samples, nil)
	if err != nil {
		return err
	}
	if c.Repair && !segmentsOK(rep) {
		closeAll()
		if rep, err = c.repair(); err != nil {
			return err
		}
	}
	if c.JSON {
		if err := printJSON(rep); err != nil {
			return err
		}
	} else {
		printReport(rep)
	}
	if !segmentsOK(rep) {
		return fmt.Errorf("verify failed: %s; `spotlight verify --repair` writes the segment files again from the database, which holds every committed step", rep.Segments)
	}
	if !rep.OK {
		return errors.New("verify failed: a layer's dual form is over tolerance")
	}
	return nil
}

func segmentsOK(rep *datadir.Report) bool { return rep.Segments == "ok" || rep.Segments == "none" }

// repair rebuilds the segment files on a read-write open and verifies again.
func (c *VerifyCommand) repair() (*datadir.Report, error) {
	dir, err := datadir.Open(c.Data, false)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	report, finish := layerProgress(nil, "rebuilding segments of")
	err = dir.RepairSegments(report)
	finish()
	if err != nil {
		return nil, err
	}
	m, err := dir.Model()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return dir.Verify(m, c.Samples, nil)
}

func printReport(rep *datadir.Report) {
	fmt.Printf("step %d, memory %s, tolerance %.0e (relative to the largest |output|)\n", rep.Step, rep.Precision, rep.Tolerance)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "layer\tentries\tsamples\tmax abs err\tmax rel err\t")
	for _, l := range rep.Layers {
		verdict := "ok"
		if l.MaxRelErr > rep.Tolerance {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%.2e\t%.2e\t%s\n", l.Name, l.Entries, l.Samples, l.MaxAbsErr, l.MaxRelErr, verdict)
	}
	_ = w.Flush()
	fmt.Printf("segment files: %s\n", rep.Segments)
}
