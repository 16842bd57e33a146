// Head bh % heads of batch bh / heads; a row is rowStride() elements on from the previous one
// ([B, T, heads * D] token layout; heads = 1 is the contiguous [BH, T, D] layout).
fn rowStride() -> u32 {
  return p.heads * D;
}

// The first element of head bh in a tensor of t rows per batch (q, o: tq; k, v: tk).
fn headBase(bh: u32, t: u32) -> u32 {
  return (bh / p.heads) * t * rowStride() + (bh % p.heads) * D;
}
