import torch as th

# Small networks on shared cores: more than one thread makes torch much slower here (see DESIGN.md)
th.set_num_threads(1)
