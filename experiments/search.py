"""ENOS operator / computing-mode search (pannjax.search).  Examples:

    python experiments/search.py search=bilevel model=digits_cnn data=digits search.lambda=0.3
    python experiments/search.py -m search.lambda=0,0.1,0.3,1      # then: python scripts/aggregate.py <sweep dir>
    python experiments/search.py +experiment=enos_shufflenet_cifar10
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pannjax.distributed import follower_argv
from pannjax.experiment import exit_on_config_error, objective
from pannjax.search.runner import run_search_experiment
from pannjax.rundir import refuse_before_hydra
from pannjax.schema import check_command_line


@hydra.main(version_base="1.3", config_path="../configs", config_name="search")
def main(cfg: DictConfig) -> float | tuple[float, ...]:
    with exit_on_config_error():
        return objective(run_search_experiment(cfg, HydraConfig.get().runtime.output_dir), cfg.get("objective"))


if __name__ == "__main__":
    sys.argv = follower_argv(sys.argv)  # a process other than 0 of a multi-process run writes no files
    check_command_line("search", sys.argv[1:])  # a config Hydra cannot compose: one line, exit 2
    refuse_before_hydra()  # before Hydra writes .hydra/ into an explicit run dir
    main()
