//! What the ikc fuzz targets share: how a fuzz input is cut into the reads a
//! decoder or a socket sees.

/// Cuts `data` into chunks whose sizes come from one seed byte, so the
/// fuzzer controls where reads end (a head split at any byte, a payload
/// split anywhere) with a single byte it can mutate.
///
/// Seed 0 is one chunk (everything in one read); any other seed gives
/// chunks of 1 to `(seed & 0x3f) + 1` bytes from a xorshift sequence.
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    data: &'a [u8],
    state: u32,
    largest: u32,
}

impl<'a> Chunks<'a> {
    /// Chunks of `data` as `seed` cuts them.
    #[must_use]
    pub fn new(data: &'a [u8], seed: u8) -> Self {
        Chunks {
            data,
            state: u32::from(seed) | 0x9e37_7900,
            largest: if seed == 0 {
                u32::MAX
            } else {
                u32::from(seed & 0x3f) + 1
            },
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.data.is_empty() {
            return None;
        }
        // xorshift32: cheap, and the same cuts for the same seed every run.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let size = if self.largest == u32::MAX {
            self.data.len()
        } else {
            (self.state % self.largest) as usize + 1
        };
        let (chunk, rest) = self.data.split_at(size.min(self.data.len()));
        self.data = rest;
        Some(chunk)
    }
}
