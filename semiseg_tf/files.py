"""Writing output files so that a reader (or a resumed run) never sees one half-written."""
import io
import os


def atomic_write_bytes(path, data):
    """Writes via a temporary file beside `path` and a rename; a write that fails (a full disk)
    leaves neither a partial file nor the temporary one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError) and not error.filename:
            # A failed write() names no file; the caller's message should.
            raise OSError(error.errno, error.strerror, path) from None
        raise


def write_in_folder(path, data):
    """`atomic_write_bytes`, creating the file's folder first where it does not exist."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, data)


def atomic_savez(path, **arrays):
    """`numpy.savez_compressed` via a temporary file beside `path` and a rename."""
    import numpy as np
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def png_bytes(picture):
    """A uint8 RGB (or grey) array encoded as PNG."""
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(picture).save(out, format="PNG")
    return out.getvalue()
