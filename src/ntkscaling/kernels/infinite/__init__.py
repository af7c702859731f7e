"""The infinite-width NTK and NNGP: `api` (the public functions and the plain recursion over the layers),
`blocks` (the same recursion for blocks of input pairs within a memory budget) and `native` (its image-pair
step in C, `pairstep.c`, compiled on first use)."""
