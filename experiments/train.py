"""Train a pannjax model.  Examples:

    python experiments/train.py                                   # digits_cnn on digits, float
    python experiments/train.py quant=uniform quant.w_bits=4 quant.x_bits=4
    python experiments/train.py -m quant=uniform quant.w_bits=2,4,8
    python experiments/train.py data=cifar10 model=resnet20 trainer=cifar
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pannjax.distributed import follower_argv
from pannjax.experiment import exit_on_config_error, objective
from pannjax.runner import run_train
from pannjax.rundir import refuse_before_hydra
from pannjax.schema import check_command_line


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | tuple[float, ...]:
    with exit_on_config_error():
        return objective(run_train(cfg, HydraConfig.get().runtime.output_dir), cfg.get("objective"))


if __name__ == "__main__":
    sys.argv = follower_argv(sys.argv)  # a process other than 0 of a multi-process run writes no files
    check_command_line("train", sys.argv[1:])  # a config Hydra cannot compose: one line, exit 2
    refuse_before_hydra(resume_key="trainer.resume")  # before Hydra writes .hydra/ into an explicit run dir
    main()
