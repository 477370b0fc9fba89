"""Exceptions raised by emonext_edge. Every message names the file/element at fault and what was expected."""


class EmoNeXtError(Exception):
    """Base class of every error this package raises on bad input."""


class CheckpointError(EmoNeXtError):
    """A checkpoint file is missing, unreadable, or not an EmoNeXt checkpoint."""


class ArchitectureMismatchError(CheckpointError):
    """The checkpoint's tensors do not fit the EmoNeXt architecture inferred from it."""


class ImageError(EmoNeXtError, ValueError):
    """An input image is missing, unreadable, or of the wrong shape/dtype/values."""


class ModelFileError(EmoNeXtError):
    """A model artifact is missing, of an unknown kind, or incomplete."""


class BackendUnavailableError(EmoNeXtError):
    """The inference engine needed for an artifact is not installed or has no device."""


class ExportError(EmoNeXtError):
    """An export or verification step failed; no artifact was written."""


class VerificationError(ExportError):
    """An artifact failed its fidelity gate / verification; CLIs exit with code 1."""


class UsageError(EmoNeXtError):
    """A command-line argument (combination) that cannot work; CLIs report it with exit code 2."""


class VideoSourceError(EmoNeXtError):
    """A video source (file, camera index, stream URL) is missing, cannot be opened, or gives no frames."""


class ImageTypeError(ImageError, TypeError):
    """An image argument of the wrong Python type (``None``, a number, bytes, ...); names the type expected."""


class ModelPathTypeError(ModelFileError, TypeError):
    """A model path of the wrong Python type (``Runtime(None)``, ``Runtime(3)``); names the type expected."""


class OpenCVMissingError(BackendUnavailableError, ImportError):
    """``cv2`` cannot be imported; the message names the install command for this machine."""
