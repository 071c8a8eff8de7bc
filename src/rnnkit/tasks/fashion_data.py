"""Fashion-MNIST for ``rnnkit train fashion``: the IDX reader, the images as sequences, and a
user's picture as a 28x28 image.

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, MIT licence): 60,000 training and 10,000 test
28x28 grey images of 10 kinds of clothing, white garment on a black background; by default read
from ``../shared/data/images/fashion_mnist/`` beside the project (Debian ``dataset-fashion-mnist``;
any directory with the same four files works, gzip-compressed or not).

IDX format (LeCun's MNIST page): a big-endian header ``0x00 0x00 TYPE NDIM`` (TYPE 0x08:
unsigned bytes), then NDIM big-endian uint32 sizes, then the data in C order. The images are
``0x00000803`` (N, 28, 28), the labels ``0x00000801`` (N,).

An image becomes a sequence in one of two orders, time-major like every sequence task:

- ``row``: 28 steps of 28 pixels, x_t = row t of the image (T, B, 28);
- ``pixel``: 784 steps of one pixel in raster order (T, B, 1), optionally shuffled by a fixed
  permutation π of the 784 positions (x_t = pixel π(t)): the permuted benchmark of Le, Jaitly &
  Hinton 2015, where neighbouring pixels end up hundreds of steps apart.

Intensities are scaled to [0, 1] (byte / 255).
"""

from __future__ import annotations

import functools
import gzip
import struct
import zlib
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.errors import UserError

# ../shared/data/images/fashion_mnist beside the project root (src/rnnkit/tasks/ -> parents[3])
DEFAULT_DIR = (
    Path(__file__).resolve().parents[3].parent / "shared" / "data" / "images" / "fashion_mnist"
)
SIDE = 28
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FILES = {  # split -> (images, labels), the names of the original distribution
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


def _raw_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if it is gzip (by its first two bytes, not its name)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (expected a Fashion-MNIST IDX file)") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected an IDX file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise UserError(f"{path}: truncated gzip stream (the file is cut short)") from None
    except (OSError, zlib.error) as e:
        raise UserError(f"{path}: not a valid gzip file ({e})") from None


def read_idx(path: str | Path, magic: int) -> Tensor:
    """An IDX file of unsigned bytes as a uint8 tensor of its declared shape.

    Args:
        path: the file, gzip-compressed or not.
        magic: the expected magic number: 0x00000803 for images (N, rows, cols), 0x00000801
            for labels (N,).

    Raises:
        UserError: one line naming the file: missing, a bad magic number, or fewer bytes than
            the header declares (truncated); extra bytes after the data are refused too.
    """
    path = Path(path)
    data = _raw_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise UserError(f"{path}: truncated: {len(data)} bytes, expected an IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise UserError(
            f"{path}: bad magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"(IDX, unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    if len(data) < header:
        raise UserError(f"{path}: truncated: the header needs {header} bytes, found {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    size = 1
    for n in shape:
        size *= n
    if len(data) - header != size:
        what = "truncated" if len(data) - header < size else "too long"
        raise UserError(
            f"{path}: {what}: its header declares shape {tuple(shape)} = {size} bytes of data, "
            f"found {len(data) - header}"
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    """``stem.gz`` or ``stem`` in ``directory`` (the .gz preferred)."""
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise UserError(
        f"{directory}: no {stem}.gz (or {stem}); expected the four Fashion-MNIST IDX files"
    )


@functools.cache
def load_split(directory: str | None, split: str) -> tuple[Tensor, Tensor]:
    """The ``split`` ("train" or "test") of the data in ``directory`` (None: the default):
    images uint8 (N, 28, 28), labels int64 (N,) in [0, 10).

    Raises:
        UserError: a missing or malformed file, images that are not 28x28, a count that differs
            between the images and the labels, or a label outside 0..9.
    """
    folder = Path(directory) if directory else DEFAULT_DIR
    if not folder.is_dir():
        raise UserError(f"{folder}: not a directory (expected the Fashion-MNIST IDX files)")
    images_stem, labels_stem = FILES[split]
    images_path, labels_path = _find(folder, images_stem), _find(folder, labels_stem)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC).long()
    if tuple(images.shape[1:]) != (SIDE, SIDE):
        raise UserError(f"{images_path}: images of {tuple(images.shape[1:])}, expected 28x28")
    if len(images) != len(labels):
        raise UserError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}"
        )
    if len(labels) and int(labels.max()) >= len(CLASSES):
        raise UserError(f"{labels_path}: label {int(labels.max())}, expected 0..9")
    return images, labels


def permutation(seed: int) -> Tensor:
    """The fixed permutation π of the 784 pixel positions for ``data.permute``."""
    return torch.randperm(SIDE * SIDE, generator=torch.Generator().manual_seed(seed))


def order_of(data) -> tuple[str, Tensor | None]:
    """The order of the pixels under a data config (``order``, ``permute``, ``permute_seed``):
    ("row" | "pixel", the permutation or None)."""
    perm = permutation(data.permute_seed) if data.order == "pixel" and data.permute else None
    return data.order, perm


def split(data, n: int) -> tuple[Tensor, Tensor]:
    """Indices (train, validation) into the ``n`` training images under a data config
    (``split_seed``, ``val_size``, ``train_size``): a fixed split, the same in every run."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(data.split_seed))
    train = order[data.val_size :]
    if data.train_size:
        train = train[: data.train_size]
    return train, order[: data.val_size]


def to_sequences(images: Tensor, order: str, perm: Tensor | None = None) -> Tensor:
    """Images uint8 (N, 28, 28) as float sequences in [0, 1], time-major.

    ``order`` "row": (28, N, 28), step t = row t. "pixel": (784, N, 1), step t = pixel t in
    raster order, or pixel ``perm[t]`` if a permutation is given.
    """
    x = images.float().div_(255.0)
    if order == "row":
        return x.transpose(0, 1).contiguous()
    if order != "pixel":
        raise ValueError(f"order must be 'row' or 'pixel', got {order!r}")
    flat = x.reshape(len(x), SIDE * SIDE)
    if perm is not None:
        flat = flat[:, perm]
    return flat.T.unsqueeze(-1).contiguous()


def read_picture(path: str | Path, invert: str = "auto") -> tuple[Tensor, bool]:
    """Any picture Pillow reads (PNG, JPEG, ...) as a Fashion-MNIST-like uint8 image (28, 28).

    Converted to grey ("L"), resized to 28x28 (Lanczos). Fashion-MNIST garments are light on
    a black background; a photo is usually dark on light, so ``invert`` "auto" inverts when
    the border (the outermost pixels) is brighter than mid-grey; "yes"/"no" force it.

    Returns:
        (image, inverted).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as picture:
            grey = picture.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (expected a PNG or JPEG picture)") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path}: not a picture Pillow can read ({e})") from None
    image = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).reshape(SIDE, SIDE)
    border = torch.cat([image[0], image[-1], image[:, 0], image[:, -1]]).float().mean()
    inverted = invert == "yes" or (invert == "auto" and float(border) > 127.5)
    return (255 - image if inverted else image), inverted


def write_picture(image: Tensor, path: str | Path, scale: int = 1) -> None:
    """A uint8 image (28, 28) as a grey PNG (or any format by the suffix), ``scale`` times
    larger (nearest neighbour): what ``rnnkit eval RUN --export`` writes for ``predict``."""
    from PIL import Image

    picture = Image.frombytes("L", (SIDE, SIDE), bytes(image.to(torch.uint8).contiguous().numpy()))
    if scale > 1:
        picture = picture.resize((SIDE * scale, SIDE * scale), Image.Resampling.NEAREST)
    try:
        picture.save(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot write the picture ({e})") from None
