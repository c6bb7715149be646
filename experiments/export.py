"""Export a trained network as an integer-only program (pannjax/export/experiment.py).  Examples:

    python experiments/export.py checkpoint=outputs/train/<date>/<time>
    python experiments/export.py checkpoint=<float run> convert=pann budget_bits=2
    python experiments/export.py checkpoint=<run dir> out=deploy/digits acc_bits=auto
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pannjax.experiment import exit_on_config_error, to_container
from pannjax.export.experiment import run_export
from pannjax.rundir import refuse_before_hydra
from pannjax.schema import check_command_line


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_config_error():
        res = run_export(to_container(cfg), HydraConfig.get().runtime.output_dir)
    print(f"{res['program']}: integer test accuracy {res['test_accuracy']:.4f} (fake-quant "
          f"{res['fake_quant_accuracy']:.4f}, agreement {res['argmax_agreement']:.4f}), {res['overflows']} overflows")


if __name__ == "__main__":
    check_command_line("export", sys.argv[1:])  # a config Hydra cannot compose: one line, exit 2
    refuse_before_hydra(source_key="checkpoint")  # before Hydra writes .hydra/ into an explicit run dir
    main()
