package api

import (
	"fmt"
	"runtime/debug"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// snapshot is one consistent checkpoint: the model and the memory of the same committed
// step. Queries hold a reference while they run; a retired snapshot is closed by its last
// reader.
type snapshot struct {
	model   *lm.Model
	engine  *query.Engine
	step    int
	refs    int  // guarded by Server.snapMu
	retired bool // guarded by Server.snapMu
}

func (sn *snapshot) close() {
	sn.engine.Close()
	sn.model.Close()
}

// loadSnapshot builds a snapshot of the store's last commit. A commit that lands while the
// engine loads makes model and memory disagree; then it simply tries again.
func loadSnapshot(store *dualmem.Store) (*snapshot, error) {
	for try := 0; ; try++ {
		step, ckpt, err := store.Checkpoint()
		if err != nil {
			return nil, err
		}
		model, err := lm.LoadModel(ckpt)
		if err != nil {
			return nil, err
		}
		eng, err := query.NewEngine(model, store, nil)
		if err != nil {
			model.Close()
			return nil, err
		}
		if eng.Step() == step && model.Step == step {
			return &snapshot{model: model, engine: eng, step: step}, nil
		}
		eng.Close()
		model.Close()
		if try == 10 {
			return nil, fmt.Errorf("memory kept moving while loading checkpoint %d", step)
		}
	}
}

// acquire returns the current snapshot, referenced until release.
func (s *Server) acquire() *snapshot {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.snap.refs++
	return s.snap
}

func (s *Server) release(sn *snapshot) {
	s.snapMu.Lock()
	sn.refs--
	done := sn.retired && sn.refs == 0
	s.snapMu.Unlock()
	if done {
		sn.close()
	}
}

// swap installs next as the current snapshot and retires the old one.
func (s *Server) swap(next *snapshot) {
	s.snapMu.Lock()
	old := s.snap
	s.snap = next
	var done bool
	if old != nil {
		old.retired = true
		done = old.refs == 0
	}
	s.snapMu.Unlock()
	if done {
		old.close()
	}
}

// refresher rebuilds the snapshot after every commit, off the request path, until stop.
func (s *Server) refresher() {
	defer s.bg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.committed:
		}
		if s.currentStep() == s.dir.Store.Steps() {
			continue
		}
		next, err := loadSnapshot(s.dir.Store)
		if err != nil {
			s.log.Error("reloading checkpoint", "err", err)
			continue
		}
		s.swap(next)
		debug.FreeOSMemory() // the old snapshot's memory is garbage now (or soon): give it back
		s.log.Info("serving checkpoint", "step", next.step)
	}
}

func (s *Server) currentStep() int {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	return s.snap.step
}

// notifyingMemory passes steps to the store and wakes the refresher after each commit.
type notifyingMemory struct {
	*dualmem.Store
	committed chan<- struct{}
}

func (m notifyingMemory) Commit(step int, checkpoint []byte) error {
	err := m.Store.Commit(step, checkpoint)
	if err == nil {
		select {
		case m.committed <- struct{}{}:
		default:
		}
	}
	return err
}
