package query

import (
	"context"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// trainStore trains cfg.Steps steps into a new store in dir. It builds the store itself
// rather than through package datadir, which sits above query (it loads engines).
func trainStore(dir string, cfg lm.Config, corpus []byte) (*dualmem.Store, error) {
	tr, err := lm.NewTrainer(cfg, string(corpus))
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	cfg = tr.Cfg
	meta, err := dualmem.MetaFor(cfg)
	if err != nil {
		return nil, err
	}
	ckpt, err := tr.Checkpoint()
	if err != nil {
		return nil, err
	}
	store, err := dualmem.Create(dir, meta, corpus, tr.Initial(), ckpt)
	if err != nil {
		return nil, err
	}
	if err := tr.Train(context.Background(), store, cfg.Steps, nil); err != nil {
		store.Close()
		return nil, err
	}
	return store, nil
}
