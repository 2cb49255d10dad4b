"""What several test modules share: numpy twins of the kernels, the pycocotools oracle, small
real models, run readers and the scripts subprocess tests run (``python -m tests.helpers.X``)."""
