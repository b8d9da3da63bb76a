package api

import (
	"runtime/debug"

	"github.com/spotlight-lm/spotlight/datadir"
)

// snapshot is one consistent checkpoint that queries hold a reference to while they run;
// a retired snapshot is closed by its last reader.
type snapshot struct {
	*datadir.Snapshot
	refs    int  // guarded by Server.snapMu
	retired bool // guarded by Server.snapMu
}

// loadSnapshot loads the last commit, reusing prev's memory and indexes (prev may be nil;
// the caller holds a reference to it).
func (s *Server) loadSnapshot(prev *snapshot) (*snapshot, error) {
	var base *datadir.Snapshot
	if prev != nil {
		base = prev.Snapshot
	}
	sn, err := s.dir.NextSnapshot(base)
	if err != nil {
		return nil, err
	}
	return &snapshot{Snapshot: sn}, nil
}

// acquire returns the current snapshot, referenced until release.
func (s *Server) acquire() *snapshot {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.snap.refs++
	return s.snap
}

// retain takes one more reference to sn, which the caller holds, for a later release.
func (s *Server) retain(sn *snapshot) {
	s.snapMu.Lock()
	sn.refs++
	s.snapMu.Unlock()
}

func (s *Server) release(sn *snapshot) {
	s.snapMu.Lock()
	sn.refs--
	done := sn.retired && sn.refs == 0
	s.snapMu.Unlock()
	if done {
		sn.Close()
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
		old.Close()
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
		if s.currentStep() == s.dir.Steps() {
			continue
		}
		cur := s.acquire()
		next, err := s.loadSnapshot(cur)
		s.release(cur)
		if err != nil {
			s.log.Error("reloading checkpoint", "err", err)
			continue
		}
		s.swap(next)
		debug.FreeOSMemory() // the old snapshot's memory is garbage now (or soon): give it back
		s.log.Info("serving checkpoint", "step", next.Step)
	}
}

func (s *Server) currentStep() int {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	return s.snap.Step
}
