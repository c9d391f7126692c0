"""Test fixture: a stand-in for Vitis AI's ``pytorch_nndct`` (vai_q_pytorch), for the vai_q_worker tests."""

__version__ = "3.5.0-stand-in"
