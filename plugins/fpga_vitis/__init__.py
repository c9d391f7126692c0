"""Xilinx DPUs (ZCU102, VCK190, any DPU with an arch.json) through Vitis AI."""
