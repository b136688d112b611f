#!/bin/sh
# Print the interpreter `make` builds .venv with: the first Python 3.12 or 3.13 found, 3.12 first (what Colab
# runs), on PATH and then among pyenv's versions. Prints nothing when there is none.
for p in python3.12 python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python3.13; do
    if "$p" -c 'import sys; assert sys.version_info[:2] in ((3, 12), (3, 13))' 2>/dev/null; then
        echo "$p"
        exit 0
    fi
done
