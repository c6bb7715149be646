"""PANN post-training conversion and power-accuracy sweep (pannjax/pann/experiment.py).  Examples:

    python experiments/pann.py checkpoint=outputs/train/<date>/<time> budget_bits=[2,3,4]
    python experiments/pann.py checkpoint=<run dir> budget_bits=2 budget_signed=true
    python experiments/pann.py mode=sweep checkpoint=<run dir>
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pannjax.pann.experiment import run_pann
from pannjax.experiment import exit_on_config_error, to_container
from pannjax.rundir import refuse_before_hydra
from pannjax.schema import check_command_line


@hydra.main(version_base="1.3", config_path="../configs", config_name="pann")
def main(cfg: DictConfig) -> None:
    with exit_on_config_error():
        run_pann(to_container(cfg), HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    check_command_line("pann", sys.argv[1:])  # a config Hydra cannot compose: one line, exit 2
    refuse_before_hydra(source_key="checkpoint")  # before Hydra writes .hydra/ into an explicit run dir
    main()
