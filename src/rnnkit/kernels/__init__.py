"""The BPTT engine: for each built-in cell, the forward pass over a whole sequence and the
backward pass through time derived by hand, as ``torch.autograd.Function``s.

Common shape of every kernel (see each module's derivation):
- the input projection W_ih x + b_ih for all T steps arrives precomputed (one matrix product,
  done by the cell under autograd), as ``xg`` (T, B, G·H);
- forward, per step, one recurrent product and the element-wise gate work, no autograd graph;
- backward, the recursion δh_{t-1} = (∂h_t/∂h_{t-1})ᵀ (∂L_t/∂h_t + δh_t), run from T down to 1;
  the recurrent weight gradient as one matrix product over all T·B rows;
- a mask (T, B, 1) for variable lengths: past a sequence's end the state is carried unchanged
  and the output is zero, exactly as ``Recurrent.generic``.
"""
