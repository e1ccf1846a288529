//! Generational slab: a `Token` names one occupant of one slot, so a late completion for a slot
//! that was freed and reused is recognised as stale instead of reaching the wrong owner.

use std::num::NonZeroU64;

/// Slot index in the low 32 bits, generation in the high 32 bits. Travels as io_uring user_data.
/// Never 0 (generations start at 1 and skip 0), so `Option<Token>` takes 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Token(NonZeroU64);

impl Token {
    fn new(index: u32, gen: u32) -> Token {
        debug_assert!(gen != 0);
        Token::from_raw(((gen as u64) << 32) | index as u64).expect("generation is never 0")
    }
    /// A token from its raw value (io_uring user_data, a C handle); `None` for 0, which no
    /// token has.
    pub fn from_raw(v: u64) -> Option<Token> {
        NonZeroU64::new(v).map(Token)
    }
    /// The raw value, never 0.
    pub fn get(self) -> u64 {
        self.0.get()
    }
    fn index(self) -> usize {
        (self.get() & 0xffff_ffff) as usize
    }
    fn gen(self) -> u32 {
        (self.get() >> 32) as u32
    }
}

/// Owner of values addressed by `Token`. Generations are kept apart from the values, so a
/// slot costs `size_of::<Option<T>>() + 4` bytes rather than that rounded up to T's alignment
/// (the loop has a slot per pending operation, the server one per connection).
pub struct Slab<T> {
    values: Vec<Option<T>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            values: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` and returns its token.
    pub fn insert(&mut self, value: T) -> Token {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            self.values[i as usize] = Some(value);
            return Token::new(i, self.gens[i as usize]);
        }
        let i = self.values.len() as u32;
        self.values.push(Some(value));
        // Generation 1 first, so a zero token never names a live slot.
        self.gens.push(1);
        Token::new(i, 1)
    }

    fn current(&self, t: Token) -> bool {
        self.gens.get(t.index()) == Some(&t.gen())
    }

    /// The value for a token, if the token is still current.
    pub fn get(&self, t: Token) -> Option<&T> {
        if !self.current(t) {
            return None;
        }
        self.values[t.index()].as_ref()
    }

    /// Mutable access for a current token.
    pub fn get_mut(&mut self, t: Token) -> Option<&mut T> {
        if !self.current(t) {
            return None;
        }
        self.values[t.index()].as_mut()
    }

    /// Removes the value; the slot's generation advances so the token goes stale.
    pub fn remove(&mut self, t: Token) -> Option<T> {
        if !self.current(t) {
            return None;
        }
        let v = self.values[t.index()].take()?;
        let g = &mut self.gens[t.index()];
        *g = g.wrapping_add(1).max(1);
        self.free.push(t.index() as u32);
        self.len -= 1;
        Some(v)
    }

    /// The occupied slots with their tokens.
    pub fn iter(&self) -> impl Iterator<Item = (Token, &T)> {
        self.values
            .iter()
            .zip(&self.gens)
            .enumerate()
            .filter_map(|(i, (v, g))| v.as_ref().map(|v| (Token::new(i as u32, *g), v)))
    }

    /// Number of occupied slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_tokens_do_not_reach_new_occupants() {
        let mut s = Slab::default();
        let a = s.insert("a");
        assert_eq!(s.remove(a), Some("a"));
        let b = s.insert("b");
        assert_eq!(a.index(), b.index());
        assert_ne!(a, b);
        assert_eq!(s.get(a), None);
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.len(), 1);
    }
}
