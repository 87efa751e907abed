# The embedded CPU default, sourced by scripts/main.sh and bench/fit.sh: frozen MiniLM
# (conf/model/minilm.yaml), sized so that all three curriculum stages train in minutes on two
# cores: at most 8 positives per anchor, 128 samples per step (many codes recur within a step and
# are fused once), 2 epochs per stage, a warmup that fits the shorter schedule.
SHARD_OVERRIDES=(curriculum.max_positives=8)
FIT_OVERRIDES=(data.batch_size=128 training.trainer.max_epochs=2 training.scheduler.warmup_steps=50)
