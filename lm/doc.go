// Package lm is Spotlight's language model: the character tokenizer, a small pre-LayerNorm
// causal transformer built as GoMLX graphs, its SGD-family optimizer, training with
// capture, checkpoints, probing and generation.
//
// The model (model.go):
//
//	x = embed(tokens) + pos
//	for each block b: x = x + attn(ln1(x)); x = x + ff2(relu(ff1(ln2(x))))
//	logits = out(lnf(x))
//
// Where things are:
//   - layers.go: the layer table, the one list of capturable linear layers (OutLayer and
//     FFLayer(b, 1|2)) with their widths, whether training captures them and whether the
//     dual form is exact for them (out) or first-order (the feed-forward layers).
//   - optimizer.go: Optimizer and its LR Schedule, derived from the Config in one place; it
//     builds the update inside the training graph and is stored with the memory.
//   - capture.go: what training hands to a Memory each step (Step, StepInfo, LayerStep) and
//     the initial weights (Initial). Package dualmem implements Memory; lm never imports it.
//   - exec.go, outputs.go: the compiled graphs and their outputs by name.
//   - train.go, model_api.go: Trainer (steps, checkpoints, held-out loss) and Model
//     (Probe, Generate); restore.go rewinds a trainer to a checkpoint.
//   - params.go: parameters (in checkpoint order) with their decay class, and checkpoints.
//   - influence.go, influence_graph.go: Trainer.Influence, the exact derivative of a query's
//     loss w.r.t. every training token's loss weight through the whole run (adjoint replay
//     with second-order gradients; the math is the comment at the top of influence.go).
package lm
