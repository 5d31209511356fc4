"""The bottom layer: what every room needs and that needs no room. Imports only `shipml.errors`.

    files.py       atomic file and folder writes (fsynced, temp files removed on error), sha256, stale-temp
                   clean-up after a killed process
    machine.py     the CPU (name, kind: AVX2 / AVX-512 + VNNI / AMX bf16) and library versions, for run records
    cpu.py         intra-op threads from the cores this process may use and the ones other processes are busy on
    tables.py      reading CSV / TSV / JSONL / Parquet (optionally .gz / .bz2 / .xz compressed) into frames
    values.py      how raw cell values become model numbers and category text (non-finite and
                   float32-overflowing numbers count as missing), shared by training and prediction
    images.py      image files: suffixes, visible-file walking (hidden files/folders, link loops), decoding
    email.py       raw RFC 822 messages to text (html_text.py: HTML to text)
    versions.py    installed library versions known to break shipml, each with the reason and the fix

Training (`shipml.data`, `shipml.tasks`) and prediction (`shipml.runtime`) both read raw inputs through
these modules, so a served prediction sees the same numbers training did. Nothing here imports torch,
pydantic or the config: a predict-only install needs none of them.
"""
