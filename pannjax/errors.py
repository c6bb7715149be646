"""The exceptions entry points turn into one line: user mistakes (`ConfigError`, exit 2) and divergence
(`DivergenceError`, exit 3)."""


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the key and how to fix it."""


class DivergenceError(RuntimeError):
    """A run produced a non-finite loss: the message names the step, the epoch and the first layer at fault
    (`pannjax.train.divergence`). Entry points exit with status 3."""

    def __init__(self, message: str, step: int, epoch: int, layer: str):
        super().__init__(message)
        self.step, self.epoch, self.layer = step, epoch, layer

    @property
    def record(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "layer": self.layer, "message": str(self)}
