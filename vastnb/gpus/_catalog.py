"""Spec table behind :data:`vastnb.gpus.CATALOG`: one row per GPU constant of ``vastnb.query``.

Public spec-sheet figures. Conventions:

* ``memory_gb``, ``bandwidth``: per GPU as Vast lists it (a dual-GPU board such
  as the K80 is two GPUs). Where a model ships in several memory sizes the row
  says which one it holds.
* ``fp16``: dense (no sparsity) FP16/BF16 tensor TFLOPS with FP32 accumulate, the
  mode PyTorch uses. GeForce cards run that mode at half the FP16-accumulate rate
  NVIDIA advertises; pro and data-center cards at full rate. GPUs without tensor
  cores get their plain FP16 rate; Maxwell, Kepler and consumer Pascal (FP16 at
  1/64 rate, so frameworks compute in FP32) get their FP32 rate. AMD: peak FP16
  (matrix cores on Instinct, dual-issue/WMMA on RDNA 3).
* Clocks are the reference boost clocks; laptop parts vary with power limit, so
  their rows take the top of the range.
"""

from __future__ import annotations

DC, CONSUMER, PRO, AMD = "data center", "consumer", "professional", "AMD"

# constant, vendor, segment, memory GB, architecture, compute capability, memory GB/s, FP16 TFLOPS, year
ROWS: tuple[tuple[str, str, str, float, str, str | None, float, float, int], ...] = (
    # NVIDIA data center
    ("A10", "NVIDIA", DC, 24, "Ampere", "8.6", 600, 125, 2021),
    ("A10g", "NVIDIA", DC, 24, "Ampere", "8.6", 600, 70, 2021),  # AWS-only; FP32-acc at half rate
    ("A16", "NVIDIA", DC, 16, "Ampere", "8.6", 200, 17.9, 2021),  # per GPU: the board has 4 x 16 GB
    ("A30", "NVIDIA", DC, 24, "Ampere", "8.0", 933, 165, 2021),
    ("A40", "NVIDIA", DC, 48, "Ampere", "8.6", 696, 149.7, 2020),
    ("A100_PCIE", "NVIDIA", DC, 80, "Ampere", "8.0", 1935, 312, 2020),  # 80 GB; 40 GB has 1555 GB/s
    ("A100_SXM4", "NVIDIA", DC, 80, "Ampere", "8.0", 2039, 312, 2020),  # 80 GB; 40 GB has 1555 GB/s
    ("A100_SXM", "NVIDIA", DC, 80, "Ampere", "8.0", 2039, 312, 2020),  # same part as A100 SXM4
    ("A100X", "NVIDIA", DC, 80, "Ampere", "8.0", 2039, 312, 2021),  # A100 + BlueField-2 card
    ("A800_PCIE", "NVIDIA", DC, 80, "Ampere", "8.0", 1935, 312, 2022),  # China-market A100
    ("B200", "NVIDIA", DC, 180, "Blackwell", "10.0", 8000, 2250, 2024),  # HGX B200 lists 180 GB
    ("GH200_SXM", "NVIDIA", DC, 96, "Hopper", "9.0", 4000, 989, 2023),  # 96 GB HBM3; 144 GB HBM3e: 4.9 TB/s
    ("H100_PCIE", "NVIDIA", DC, 80, "Hopper", "9.0", 2000, 756, 2022),
    ("H100_SXM", "NVIDIA", DC, 80, "Hopper", "9.0", 3350, 989, 2022),
    ("H100_NVL", "NVIDIA", DC, 94, "Hopper", "9.0", 3900, 835, 2023),
    ("H200", "NVIDIA", DC, 141, "Hopper", "9.0", 4800, 989, 2024),
    ("H200_NVL", "NVIDIA", DC, 141, "Hopper", "9.0", 4800, 835, 2024),
    ("L4", "NVIDIA", DC, 24, "Ada Lovelace", "8.9", 300, 121, 2023),
    ("L40", "NVIDIA", DC, 48, "Ada Lovelace", "8.9", 864, 181, 2022),
    ("L40S", "NVIDIA", DC, 48, "Ada Lovelace", "8.9", 864, 362, 2023),
    ("Tesla_K20c", "NVIDIA", DC, 5, "Kepler", "3.5", 208, 3.52, 2012),
    ("Tesla_K80", "NVIDIA", DC, 12, "Kepler", "3.7", 240, 4.37, 2014),  # per GPU: 2 x GK210 per board
    ("Tesla_M40", "NVIDIA", DC, 24, "Maxwell", "5.2", 288, 7.0, 2015),  # 24 GB; 12 GB also sold
    ("Tesla_P4", "NVIDIA", DC, 8, "Pascal", "6.1", 192, 5.5, 2016),
    ("Tesla_P6", "NVIDIA", DC, 16, "Pascal", "6.1", 192, 6.2, 2017),
    ("Tesla_P40", "NVIDIA", DC, 24, "Pascal", "6.1", 346, 11.8, 2016),
    ("Tesla_P100", "NVIDIA", DC, 16, "Pascal", "6.0", 732, 18.7, 2016),  # PCIe 16 GB; SXM2 21.2 TFLOPS
    ("Tesla_T4", "NVIDIA", DC, 16, "Turing", "7.5", 320, 65, 2018),
    ("Tesla_V100", "NVIDIA", DC, 16, "Volta", "7.0", 900, 125, 2017),  # SXM2 16 GB; 32 GB and PCIe also
    # NVIDIA consumer: GTX (no tensor cores)
    ("GeForce_970", "NVIDIA", CONSUMER, 4, "Maxwell", "5.2", 224, 3.92, 2014),
    ("GTX_750_Ti", "NVIDIA", CONSUMER, 2, "Maxwell", "5.0", 86.4, 1.39, 2014),
    ("GTX_1050", "NVIDIA", CONSUMER, 2, "Pascal", "6.1", 112, 1.86, 2016),
    ("GTX_1050_Ti", "NVIDIA", CONSUMER, 4, "Pascal", "6.1", 112, 2.14, 2016),
    ("GTX_1060", "NVIDIA", CONSUMER, 6, "Pascal", "6.1", 192, 4.38, 2016),  # 6 GB; 3 GB also sold
    ("GTX_1070", "NVIDIA", CONSUMER, 8, "Pascal", "6.1", 256, 6.46, 2016),
    ("GTX_1070_Ti", "NVIDIA", CONSUMER, 8, "Pascal", "6.1", 256, 8.19, 2017),
    ("GTX_1080", "NVIDIA", CONSUMER, 8, "Pascal", "6.1", 320, 8.87, 2016),
    ("GTX_1080_Ti", "NVIDIA", CONSUMER, 11, "Pascal", "6.1", 484, 11.34, 2017),
    ("GTX_1650", "NVIDIA", CONSUMER, 4, "Turing", "7.5", 128, 5.97, 2019),  # Turing: FP16 at 2x FP32
    ("GTX_1650_S", "NVIDIA", CONSUMER, 4, "Turing", "7.5", 192, 8.83, 2019),
    ("GTX_1650_Ti", "NVIDIA", CONSUMER, 4, "Turing", "7.5", 192, 6.1, 2020),  # laptop part
    ("GTX_1660", "NVIDIA", CONSUMER, 6, "Turing", "7.5", 192, 10.05, 2019),
    ("GTX_1660_S", "NVIDIA", CONSUMER, 6, "Turing", "7.5", 336, 10.05, 2019),
    ("GTX_1660_Ti", "NVIDIA", CONSUMER, 6, "Turing", "7.5", 288, 10.87, 2019),
    ("GTX_TITAN_X", "NVIDIA", CONSUMER, 12, "Maxwell", "5.2", 336.5, 6.69, 2015),
    # NVIDIA consumer: RTX 20 (FP16-accumulate rate is twice these)
    ("RTX_2060", "NVIDIA", CONSUMER, 6, "Turing", "7.5", 336, 25.8, 2019),  # 6 GB; 12 GB also sold
    ("RTX_2060S", "NVIDIA", CONSUMER, 8, "Turing", "7.5", 448, 28.7, 2019),
    ("RTX_2070", "NVIDIA", CONSUMER, 8, "Turing", "7.5", 448, 29.9, 2018),
    ("RTX_2070S", "NVIDIA", CONSUMER, 8, "Turing", "7.5", 448, 36.3, 2019),
    ("RTX_2080", "NVIDIA", CONSUMER, 8, "Turing", "7.5", 448, 40.3, 2018),
    ("RTX_2080S", "NVIDIA", CONSUMER, 8, "Turing", "7.5", 496, 44.6, 2019),
    ("RTX_2080_Ti", "NVIDIA", CONSUMER, 11, "Turing", "7.5", 616, 53.8, 2018),
    # NVIDIA consumer: RTX 30
    ("RTX_3050", "NVIDIA", CONSUMER, 8, "Ampere", "8.6", 224, 18.2, 2022),
    ("RTX_3060", "NVIDIA", CONSUMER, 12, "Ampere", "8.6", 360, 25.5, 2021),
    ("RTX_3060_laptop", "NVIDIA", CONSUMER, 6, "Ampere", "8.6", 336, 21.9, 2021),
    ("RTX_3060_Ti", "NVIDIA", CONSUMER, 8, "Ampere", "8.6", 448, 32.4, 2020),
    ("RTX_3070", "NVIDIA", CONSUMER, 8, "Ampere", "8.6", 448, 40.6, 2020),
    ("RTX_3070_laptop", "NVIDIA", CONSUMER, 8, "Ampere", "8.6", 448, 32.0, 2021),
    ("RTX_3070_Ti", "NVIDIA", CONSUMER, 8, "Ampere", "8.6", 608, 43.5, 2021),
    ("RTX_3080", "NVIDIA", CONSUMER, 10, "Ampere", "8.6", 760, 59.5, 2020),  # 10 GB; 12 GB also sold
    ("RTX_3080_Ti", "NVIDIA", CONSUMER, 12, "Ampere", "8.6", 912, 68.2, 2021),
    ("RTX_3090", "NVIDIA", CONSUMER, 24, "Ampere", "8.6", 936, 71.2, 2020),
    ("RTX_3090_Ti", "NVIDIA", CONSUMER, 24, "Ampere", "8.6", 1008, 80.0, 2022),
    # NVIDIA consumer: RTX 40
    ("RTX_4060", "NVIDIA", CONSUMER, 8, "Ada Lovelace", "8.9", 272, 30.2, 2023),
    ("RTX_4060_laptop", "NVIDIA", CONSUMER, 8, "Ada Lovelace", "8.9", 256, 29.1, 2023),
    ("RTX_4060_Ti", "NVIDIA", CONSUMER, 8, "Ada Lovelace", "8.9", 288, 44.1, 2023),  # 8 GB; 16 GB also sold
    ("RTX_4070", "NVIDIA", CONSUMER, 12, "Ada Lovelace", "8.9", 504, 58.3, 2023),
    ("RTX_4070_laptop", "NVIDIA", CONSUMER, 8, "Ada Lovelace", "8.9", 256, 40.1, 2023),
    ("RTX_4070S", "NVIDIA", CONSUMER, 12, "Ada Lovelace", "8.9", 504, 71.0, 2024),
    ("RTX_4070S_Ti", "NVIDIA", CONSUMER, 16, "Ada Lovelace", "8.9", 672, 88.2, 2024),  # 4070 Ti SUPER
    ("RTX_4070_Ti", "NVIDIA", CONSUMER, 12, "Ada Lovelace", "8.9", 504, 80.2, 2023),
    ("RTX_4080", "NVIDIA", CONSUMER, 16, "Ada Lovelace", "8.9", 717, 97.5, 2022),
    ("RTX_4080_laptop", "NVIDIA", CONSUMER, 12, "Ada Lovelace", "8.9", 432, 67.7, 2023),
    ("RTX_4080S", "NVIDIA", CONSUMER, 16, "Ada Lovelace", "8.9", 736, 104.4, 2024),
    ("RTX_4090", "NVIDIA", CONSUMER, 24, "Ada Lovelace", "8.9", 1008, 165.2, 2022),
    ("RTX_4090D", "NVIDIA", CONSUMER, 24, "Ada Lovelace", "8.9", 1008, 147.1, 2023),  # China market
    ("RTX_4090_Ti", "NVIDIA", CONSUMER, 24, "Ada Lovelace", "8.9", 1152, 184.3, 2023),  # never launched; full-AD102 estimate
    # NVIDIA consumer: RTX 50
    ("RTX_5060", "NVIDIA", CONSUMER, 8, "Blackwell", "12.0", 448, 38.4, 2025),
    ("RTX_5060_Ti", "NVIDIA", CONSUMER, 16, "Blackwell", "12.0", 448, 47.4, 2025),  # 16 GB; 8 GB also sold
    ("RTX_5070", "NVIDIA", CONSUMER, 12, "Blackwell", "12.0", 672, 61.7, 2025),
    ("RTX_5070_Ti", "NVIDIA", CONSUMER, 16, "Blackwell", "12.0", 896, 87.9, 2025),
    ("RTX_5080", "NVIDIA", CONSUMER, 16, "Blackwell", "12.0", 960, 112.6, 2025),
    ("RTX_5090", "NVIDIA", CONSUMER, 32, "Blackwell", "12.0", 1792, 209.5, 2025),
    ("RTX_5090_Ti", "NVIDIA", CONSUMER, 32, "Blackwell", "12.0", 1792, 236.0, 2025),  # not launched; full-GB202 estimate
    # NVIDIA consumer: Titan (full-rate FP32 accumulate on Titan RTX / V)
    ("Titan_RTX", "NVIDIA", CONSUMER, 24, "Turing", "7.5", 672, 130.5, 2018),
    ("Titan_V", "NVIDIA", CONSUMER, 12, "Volta", "7.0", 652.8, 110, 2017),
    ("TITAN_V_CEO", "NVIDIA", CONSUMER, 32, "Volta", "7.0", 870, 125, 2018),
    ("Titan_X", "NVIDIA", CONSUMER, 12, "Pascal", "6.1", 480, 10.97, 2016),  # Titan X (Pascal)
    ("Titan_Xp", "NVIDIA", CONSUMER, 12, "Pascal", "6.1", 547.7, 12.15, 2017),
    # NVIDIA professional: Quadro
    ("Quadro_K620", "NVIDIA", PRO, 2, "Maxwell", "5.0", 29, 0.86, 2014),
    ("Quadro_K2200", "NVIDIA", PRO, 4, "Maxwell", "5.0", 80, 1.44, 2014),
    ("Quadro_P2000", "NVIDIA", PRO, 5, "Pascal", "6.1", 140, 3.0, 2017),
    ("Quadro_P4000", "NVIDIA", PRO, 8, "Pascal", "6.1", 243, 5.3, 2017),
    ("Quadro_P5000", "NVIDIA", PRO, 16, "Pascal", "6.1", 288, 8.9, 2016),
    ("Quadro_P6000", "NVIDIA", PRO, 24, "Pascal", "6.1", 432, 12.0, 2016),
    ("Quadro_GP100", "NVIDIA", PRO, 16, "Pascal", "6.0", 717, 20.7, 2017),  # GP100: FP16 at 2x FP32
    ("Quadro_GV100", "NVIDIA", PRO, 32, "Volta", "7.0", 870, 118.5, 2018),
    ("Q_RTX_4000", "NVIDIA", PRO, 8, "Turing", "7.5", 416, 57.0, 2018),
    ("Q_RTX_5000", "NVIDIA", PRO, 16, "Turing", "7.5", 448, 89.2, 2018),
    ("Q_RTX_6000", "NVIDIA", PRO, 24, "Turing", "7.5", 672, 130.5, 2018),
    ("Q_RTX_8000", "NVIDIA", PRO, 48, "Turing", "7.5", 672, 130.5, 2018),
    # NVIDIA professional: RTX A (datasheets quote sparse; these are half)
    ("RTX_A2000", "NVIDIA", PRO, 6, "Ampere", "8.6", 288, 31.9, 2021),  # 6 GB; 12 GB also sold
    ("RTX_A4000", "NVIDIA", PRO, 16, "Ampere", "8.6", 448, 76.7, 2021),
    ("RTX_A4500", "NVIDIA", PRO, 20, "Ampere", "8.6", 640, 94.6, 2021),
    ("RTX_A5000", "NVIDIA", PRO, 24, "Ampere", "8.6", 768, 111.1, 2021),
    ("RTX_A6000", "NVIDIA", PRO, 48, "Ampere", "8.6", 768, 154.8, 2020),
    # NVIDIA professional: RTX Ada (datasheet FP8-sparse "AI TOPS" / 4)
    ("RTX_2000Ada", "NVIDIA", PRO, 16, "Ada Lovelace", "8.9", 224, 48.0, 2024),
    ("RTX_4000Ada", "NVIDIA", PRO, 20, "Ada Lovelace", "8.9", 360, 81.9, 2023),
    ("RTX_4500Ada", "NVIDIA", PRO, 24, "Ada Lovelace", "8.9", 432, 158.5, 2023),
    ("RTX_5000Ada", "NVIDIA", PRO, 32, "Ada Lovelace", "8.9", 576, 261.1, 2023),
    ("RTX_5880Ada", "NVIDIA", PRO, 48, "Ada Lovelace", "8.9", 960, 307.5, 2024),
    ("RTX_6000Ada", "NVIDIA", PRO, 48, "Ada Lovelace", "8.9", 960, 364.2, 2022),
    # NVIDIA professional: RTX PRO Blackwell (datasheet FP4-sparse "AI TOPS" / 8)
    ("RTX_PRO_4000", "NVIDIA", PRO, 24, "Blackwell", "12.0", 672, 155.9, 2025),
    ("RTX_PRO_4000_Mobile", "NVIDIA", PRO, 16, "Blackwell", "12.0", 896, 161.0, 2025),  # approximate
    ("RTX_PRO_4500", "NVIDIA", PRO, 32, "Blackwell", "12.0", 896, 210.9, 2025),
    ("RTX_PRO_5000", "NVIDIA", PRO, 48, "Blackwell", "12.0", 1344, 258.0, 2025),
    ("RTX_PRO_6000", "NVIDIA", PRO, 96, "Blackwell", "12.0", 1792, 500.0, 2025),  # as the Workstation Edition
    ("RTX_PRO_6000_S", "NVIDIA", PRO, 96, "Blackwell", "12.0", 1597, 469.0, 2025),  # Server Edition
    ("RTX_PRO_6000_WS", "NVIDIA", PRO, 96, "Blackwell", "12.0", 1792, 500.0, 2025),
    ("RTX_PRO_6000_Max_Q", "NVIDIA", PRO, 96, "Blackwell", "12.0", 1792, 438.9, 2025),
    # NVIDIA mining and other (consumer dies sold to miners; throttled)
    ("CMP_50HX", "NVIDIA", CONSUMER, 10, "Turing", "7.5", 560, 22.2, 2021),  # plain FP16; tensor use unclear
    ("CMP_170HX", "NVIDIA", CONSUMER, 8, "Ampere", "8.0", 1493, 50.0, 2021),  # firmware-throttled GA100
    ("P104_100", "NVIDIA", CONSUMER, 8, "Pascal", "6.1", 320, 6.7, 2017),  # 8 GB; 4 GB also sold
    ("P106_100", "NVIDIA", CONSUMER, 6, "Pascal", "6.1", 192, 4.4, 2017),
    # AMD Instinct
    ("InstinctMI50", "AMD", AMD, 16, "GCN 5 (Vega 20)", None, 1024, 26.5, 2018),  # 16 GB; 32 GB also sold
    ("InstinctMI100", "AMD", AMD, 32, "CDNA", None, 1228.8, 184.6, 2020),
    ("InstinctMI210", "AMD", AMD, 64, "CDNA 2", None, 1638.4, 181.0, 2022),
    ("InstinctMI250X", "AMD", AMD, 128, "CDNA 2", None, 3276.8, 383.0, 2021),  # whole package (2 dies)
    # AMD Radeon Pro
    ("PRO_W6800", "AMD", AMD, 32, "RDNA 2", None, 512, 35.7, 2021),
    ("PRO_W7800", "AMD", AMD, 32, "RDNA 3", None, 576, 90.5, 2023),
    ("PRO_W7900", "AMD", AMD, 48, "RDNA 3", None, 864, 122.6, 2023),
    ("Pro_V620", "AMD", AMD, 32, "RDNA 2", None, 512, 40.6, 2021),
    ("Radeon_VII", "AMD", AMD, 16, "GCN 5 (Vega 20)", None, 1024, 27.7, 2019),
    ("Radeon_Pro_VII", "AMD", AMD, 16, "GCN 5 (Vega 20)", None, 1024, 26.1, 2020),
    # AMD Radeon RX
    ("RX_6800", "AMD", AMD, 16, "RDNA 2", None, 512, 32.3, 2020),
    ("RX_6800_XT", "AMD", AMD, 16, "RDNA 2", None, 512, 41.5, 2020),
    ("RX_6900_XT", "AMD", AMD, 16, "RDNA 2", None, 512, 46.1, 2020),
    ("RX_6950_XT", "AMD", AMD, 16, "RDNA 2", None, 576, 47.3, 2022),
    ("RX_7600", "AMD", AMD, 8, "RDNA 3", None, 288, 43.5, 2023),
    ("RX_7700_XT", "AMD", AMD, 12, "RDNA 3", None, 432, 70.3, 2023),
    ("RX_7800_XT", "AMD", AMD, 16, "RDNA 3", None, 624, 74.6, 2023),
    ("RX_7900_GRE", "AMD", AMD, 16, "RDNA 3", None, 576, 92.0, 2023),
    ("RX_7900_XT", "AMD", AMD, 20, "RDNA 3", None, 800, 103.0, 2022),
    ("RX_7900_XTX", "AMD", AMD, 24, "RDNA 3", None, 960, 122.8, 2022),
)
