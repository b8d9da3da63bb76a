package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/datadir"
)

func newVerifyCmd() *cobra.Command {
	var (
		data    string
		samples int
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check that each captured layer's memory reproduces the layer on held-out contexts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, m, closeAll, err := openModel(data)
			if err != nil {
				return err
			}
			defer closeAll()
			rep, err := dir.Verify(m, samples, nil)
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(rep); err != nil {
					return err
				}
			} else {
				printReport(rep)
			}
			if !rep.OK {
				return errors.New("verify failed: a layer's dual form is over tolerance")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "data directory")
	cmd.Flags().IntVar(&samples, "samples", 8, "held-out contexts to check")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	_ = cmd.MarkFlagRequired("data")
	return cmd
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
}
