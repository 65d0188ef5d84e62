"""imagecore: the domain of a job-based image processing service (pure, no I/O).

The public names, and where each lives:

- here, the domain: the records (`Instruction`, `InstructionDetail`,
  `OutputFile`, `ImageInfo`, `Status`), the catalogue (`CATALOGUE`,
  `find_product`, `Product`, `Parameter`, `Limits`), the ports
  (`ImageStorage`, `InstructionRepository`, `MessageBroker`, `ImageProcessor`,
  `RunProcessor`, `ProcessingRequest`, `ProcessingResult`, `StoredObject`),
  every error of `imagecore.errors` (`ImageCoreError` is their base), and
  ``__version__``. The use cases are `imagecore.services` (the API side) and
  `imagecore.processing` (the worker side); they take the ports as arguments.
- `adapters.vips`: processing with libvips, ``process_bytes``,
  ``process_file`` and ``Result`` (synchronous, in this process) and
  ``ImagePool`` (async, over a pool of child processes). They live there, not
  here, because this package imports no I/O library and no adapter (the
  import contracts of pyproject.toml check it).
- `adapters.memory`, `adapters.sqlite`, `adapters.filesystem`, ...: the
  adapters of the ports, one module per technology.
- `imagecore.testing` (the ``testing`` extra): the ports' contract suites,
  Hypothesis strategies, a fake processor and a pytest plugin.
"""

from __future__ import annotations

from importlib import metadata

from imagecore.errors import (
    ConflictError,
    CorruptImage,
    DependencyUnavailable,
    FileAbandoned,
    FileTooLarge,
    ImageCoreError,
    ImageTooLarge,
    InvalidParameter,
    InvalidTransition,
    LimitExceeded,
    NotFound,
    ObjectNotFound,
    ProcessingError,
    ProcessingTimeout,
    ProcessorCrashed,
    ServiceBusy,
    Stale,
    StorageFull,
    TooManyAttempts,
    TooManyFiles,
    UnknownProduct,
    UnsupportedMediaType,
    ValidationError,
    WorkerLost,
)
from imagecore.model import ImageInfo, Instruction, InstructionDetail, OutputFile, Status
from imagecore.params import Parameter
from imagecore.ports import (
    ImageProcessor,
    ImageStorage,
    InstructionRepository,
    MessageBroker,
    ProcessingRequest,
    ProcessingResult,
    RunProcessor,
    StoredObject,
)
from imagecore.products import CATALOGUE, Limits, Product, find_product

__all__ = [
    "CATALOGUE",
    "ConflictError",
    "CorruptImage",
    "DependencyUnavailable",
    "FileAbandoned",
    "FileTooLarge",
    "ImageCoreError",
    "ImageInfo",
    "ImageProcessor",
    "ImageStorage",
    "ImageTooLarge",
    "Instruction",
    "InstructionDetail",
    "InstructionRepository",
    "InvalidParameter",
    "InvalidTransition",
    "LimitExceeded",
    "Limits",
    "MessageBroker",
    "NotFound",
    "ObjectNotFound",
    "OutputFile",
    "Parameter",
    "ProcessingError",
    "ProcessingRequest",
    "ProcessingResult",
    "ProcessingTimeout",
    "ProcessorCrashed",
    "Product",
    "RunProcessor",
    "ServiceBusy",
    "Stale",
    "Status",
    "StorageFull",
    "StoredObject",
    "TooManyAttempts",
    "TooManyFiles",
    "UnknownProduct",
    "UnsupportedMediaType",
    "ValidationError",
    "WorkerLost",
    "__version__",
    "find_product",
]

try:
    __version__: str = metadata.version("imagecore")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
