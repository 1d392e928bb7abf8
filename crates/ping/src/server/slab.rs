//! The connection table: connections indexed by slot number, which is also their epoll token.

use std::collections::VecDeque;

use super::connection::Conn;

/// A table of connections indexed by slot number (the epoll token).
#[derive(Default)]
pub(super) struct Slab {
    slots: Vec<Option<Conn>>,
    free: VecDeque<usize>,
    len: usize,
}

impl Slab {
    pub(super) fn insert(&mut self, conn: Conn) -> usize {
        self.len += 1;
        let slot = match self.free.pop_front() {
            Some(s) => {
                self.slots[s] = Some(conn);
                s
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        };
        self.slots[slot].as_mut().expect("just stored").token = slot as u64;
        slot
    }
    pub(super) fn get_mut(&mut self, slot: usize) -> Option<&mut Conn> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }
    pub(super) fn remove(&mut self, slot: usize) -> Conn {
        let conn = self.slots[slot].take().expect("slot in use");
        self.free.push_back(slot);
        self.len -= 1;
        conn
    }
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Conn)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
    }
}
