"""The errors a run stops with: each message names the file, key or value, and what to do. main.py turns
them into `error: ...` and exit status 2 (OSError, a full disk: 3)."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, key or value."""


class DataError(ValueError):
    """Bad dataset files or samples; the message names the file, index and sample."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, bad labels); the message says where and what is safe."""


class WorkDirBusy(RuntimeError):
    """Another live process holds the work_dir's lock; the message names it."""


RUN_ERRORS = (ConfigError, DataError, CheckpointError, TrainingError, WorkDirBusy, FileNotFoundError)
