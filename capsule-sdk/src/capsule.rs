//! The capsule being processed.

use ants_wire::abi::Field;
use ants_wire::{Address, CapsuleType};

use crate::error::{Error, Result, check};
use crate::sys;

/// Handle to the capsule the handler was called for.
///
/// `type`, `src` and `prev` are read-only (the node enforces it); `dst`, the protocol header
/// and the payload can be changed, and [`Capsule::route_for_node`] /
/// [`Capsule::deliver_to_app`] send the capsule *as it is at that moment*.
#[derive(Debug)]
pub struct Capsule {
    _private: (),
}

fn read_addr(field: Field) -> Address {
    let mut a = [0u8; 16];
    // A 16-byte address field always reads fully; on any error the address stays `::`.
    let _ = sys::capsule_read(field as i32, 0, &mut a);
    Address(a)
}

impl Capsule {
    pub(crate) fn new() -> Capsule {
        Capsule { _private: () }
    }

    /// The capsule type: SHA-256 of this very module.
    pub fn capsule_type(&self) -> CapsuleType {
        let mut t = [0u8; 32];
        let _ = sys::capsule_read(Field::Type as i32, 0, &mut t);
        CapsuleType(t)
    }

    /// The original sender.
    pub fn src(&self) -> Address {
        read_addr(Field::Src)
    }

    /// The destination.
    pub fn dst(&self) -> Address {
        read_addr(Field::Dst)
    }

    /// The previous active hop (`::` if injected by an app on this node).
    pub fn prev(&self) -> Address {
        read_addr(Field::Prev)
    }

    /// Change the destination (copies sent afterwards carry it).
    pub fn set_dst(&mut self, dst: Address) -> Result<()> {
        check(sys::capsule_write(Field::Dst as i32, 0, &dst.0)).map(drop)
    }

    /// The resource budget not yet given to copies: at the start of a run, the resource the
    /// capsule arrived with (the most transmissions it and all its descendants may cause).
    pub fn resource(&self) -> u16 {
        u16::try_from(sys::capsule_resource()).unwrap_or(0)
    }

    /// Length of the protocol header.
    pub fn header_len(&self) -> usize {
        check(sys::capsule_len(Field::Header as i32)).map_or(0, |n| n as usize)
    }

    /// Length of the payload.
    pub fn payload_len(&self) -> usize {
        check(sys::capsule_len(Field::Payload as i32)).map_or(0, |n| n as usize)
    }

    /// Copy header bytes from `offset` into `buf`; returns how many were copied.
    pub fn read_header(&self, offset: usize, buf: &mut [u8]) -> Result<usize> {
        read(Field::Header, offset, buf)
    }

    /// Copy payload bytes from `offset` into `buf`; returns how many were copied.
    pub fn read_payload(&self, offset: usize, buf: &mut [u8]) -> Result<usize> {
        read(Field::Payload, offset, buf)
    }

    /// The first `N` header bytes, or [`Error::Malformed`] if the header is shorter.
    pub fn header<const N: usize>(&self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        if read(Field::Header, 0, &mut out)? < N {
            return Err(Error::Malformed);
        }
        Ok(out)
    }

    /// Overwrite header bytes at `offset` (within the current length).
    pub fn write_header(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        write(Field::Header, offset, data)
    }

    /// Overwrite payload bytes at `offset` (within the current length).
    pub fn write_payload(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        write(Field::Payload, offset, data)
    }

    /// Replace the whole header with `data` (resizing it).
    pub fn set_header(&mut self, data: &[u8]) -> Result<()> {
        self.resize_header(data.len())?;
        write(Field::Header, 0, data)
    }

    /// Grow (zero-filled) or shrink the header.
    pub fn resize_header(&mut self, len: usize) -> Result<()> {
        check(sys::capsule_resize(Field::Header as i32, len)).map(drop)
    }

    /// Grow (zero-filled) or shrink the payload.
    pub fn resize_payload(&mut self, len: usize) -> Result<()> {
        check(sys::capsule_resize(Field::Payload as i32, len)).map(drop)
    }

    /// Send a copy of the capsule, as it is now, toward `toward` (the node picks the next
    /// hop). Call several times to send several copies. The copies of one run share the
    /// resource the capsule arrived with: each costs one unit now, and what is left when the
    /// handler returns is split equally among them (a single copy carries `resource() - 1`).
    pub fn route_for_node(&mut self, toward: Address) -> Result<()> {
        check(sys::route_for_node(&toward.0)).map(drop)
    }

    /// Like [`route_for_node`](Self::route_for_node), but the copy carries exactly
    /// `resource`, taken from the budget now together with the unit its transmission costs
    /// (`ResourceExhausted` if the budget cannot pay `resource + 1`). Use it to split the
    /// budget unevenly, e.g. by the size of each branch of a tree.
    pub fn route_for_node_with(&mut self, toward: Address, resource: u16) -> Result<()> {
        check(sys::route_for_node_with(&toward.0, resource)).map(drop)
    }

    /// Hand a copy of the capsule, as it is now, to local app `app`.
    pub fn deliver_to_app(&mut self, app: u32) -> Result<()> {
        check(sys::deliver_to_app(app)).map(drop)
    }
}

fn offset32(offset: usize) -> Result<u32> {
    u32::try_from(offset).map_err(|_| Error::BadArgument)
}

fn read(field: Field, offset: usize, buf: &mut [u8]) -> Result<usize> {
    check(sys::capsule_read(field as i32, offset32(offset)?, buf)).map(|n| n as usize)
}

fn write(field: Field, offset: usize, data: &[u8]) -> Result<()> {
    check(sys::capsule_write(field as i32, offset32(offset)?, data)).map(drop)
}
