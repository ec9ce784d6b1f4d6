"""``python -m minidl.data NAME [DEST_DIR]``: download a data set (default ``~/.minidl/data``)."""
from .fetch import main

main()
