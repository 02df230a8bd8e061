//! A socket's two ends as both programs record them (the owner scan's
//! record, the tracer's event): the ports and the addresses of
//! `sock.__sk_common`, 48 bytes from where a record puts them, stored by
//! the program and read back by its decoder from this one layout.

use super::Refusal;
use super::asm::Size::{DW, H, W};
use super::asm::{Asm, Field, Reg, Slot};
use super::kernel::Kernel;
use crate::procfs::Ends;

/// The ends' slots: the ports at `base`, the IPv4 addresses 8 bytes on,
/// the IPv6 ones (16 bytes each, stored in two halves) 16 bytes on.
#[derive(Clone, Copy, Debug)]
pub(super) struct EndSlots {
    /// Host order.
    pub local_port: Slot,
    /// Network order.
    pub remote_port: Slot,
    pub local_addr4: Slot,
    pub remote_addr4: Slot,
    pub local_addr6: [Slot; 2],
    pub remote_addr6: [Slot; 2],
}

impl EndSlots {
    pub(super) const fn at(base: usize) -> Self {
        EndSlots {
            local_port: Slot::new("local_port", base, H),
            remote_port: Slot::new("remote_port", base + 2, H),
            local_addr4: Slot::new("local_addr4", base + 8, W),
            remote_addr4: Slot::new("remote_addr4", base + 12, W),
            local_addr6: [
                Slot::new("local_addr6[0..8]", base + 16, DW),
                Slot::new("local_addr6[8..16]", base + 24, DW),
            ],
            remote_addr6: [
                Slot::new("remote_addr6[0..8]", base + 32, DW),
                Slot::new("remote_addr6[8..16]", base + 40, DW),
            ],
        }
    }

    /// The program's part: `sk`'s ends into the record, through `scratch`.
    pub(super) fn store<L: Copy + PartialEq + std::fmt::Debug>(
        &self,
        a: &mut Asm<L>,
        k: &Kernel<'_>,
        sk: Reg,
        scratch: Reg,
    ) -> Result<(), Refusal> {
        for (name, to) in [
            ("skc_num", self.local_port),
            ("skc_dport", self.remote_port),
            ("skc_rcv_saddr", self.local_addr4),
            ("skc_daddr", self.remote_addr4),
        ] {
            a.load(scratch, sk, &k.field("sock", &["__sk_common", name], to.size.bytes() as u32)?);
            a.store(to, scratch);
        }
        for (name, to) in [("skc_v6_rcv_saddr", self.local_addr6), ("skc_v6_daddr", self.remote_addr6)] {
            let off = k.offset("sock", &["__sk_common", name], 16)?;
            for (half, slot) in to.into_iter().enumerate() {
                let path = format!("sock.__sk_common.{name}[{}..{}]", half * 8, half * 8 + 8);
                a.load(scratch, sk, &Field { path, off: off + 8 * half as i16, size: DW });
                a.store(slot, scratch);
            }
        }
        Ok(())
    }

    /// The decoder's part: the ends in `record`, the IPv6 addresses if `v6`.
    pub(super) fn read(&self, record: &[u8], v6: bool) -> Ends {
        let (mut local_addr, mut remote_addr) = ([0u8; 16], [0u8; 16]);
        if v6 {
            let addr = |half: Slot| &record[half.off..half.off + 16];
            local_addr.copy_from_slice(addr(self.local_addr6[0]));
            remote_addr.copy_from_slice(addr(self.remote_addr6[0]));
        } else {
            local_addr[..4].copy_from_slice(self.local_addr4.bytes(record));
            remote_addr[..4].copy_from_slice(self.remote_addr4.bytes(record));
        }
        Ends {
            local_port: self.local_port.read(record) as u16,
            remote_port: u16::from_be(self.remote_port.read(record) as u16),
            local_addr,
            remote_addr,
        }
    }
}
