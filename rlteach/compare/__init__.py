"""Side-by-side runs against production libraries (``python -m rlteach bench --compare sb3``).

:mod:`rlteach.compare.sb3` trains Stable-Baselines3 (and sb3-contrib) on the tasks of rlteach's
bench entries, with RL-Zoo's tuned hyper-parameters and rlteach's evaluation protocol. It needs
the optional ``bench`` extra: ``pip install "rlteach[bench]"``.
"""
