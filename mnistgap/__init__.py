"""mnistgap: how well does an MNIST-trained model read real handwriting?

Library code for the DVC stages in ``stages/``. Each module has one concern;
none of them reads ``params.yaml`` (the stages do, and pass plain values down).
"""
