//! Metrics of the Greengrass "Device Defender" connector, read from a `/proc` tree.
//!
//! The connector runs inside the Greengrass container and sees the host's `/proc` through a
//! volume resource, so the root of the tree is a parameter (`/proc`, `/host_proc`, ...). From it
//! [`collect`] gathers what the Device Defender device-side metrics document holds, and
//! [`Metrics::report`] turns that into the document itself.
//!
//! Sources, all under `<proc_root>/net`:
//!
//! * `tcp`, `tcp6`: sockets in state `0A` (LISTEN) are listening ports; sockets in state `01`
//!   (ESTABLISHED) are the established connections.
//! * `udp`, `udp6`: sockets in state `07` (UNCONN) with a bound local port are listening ports
//!   (what `ss -ul` and psutil report as UDP listeners; connected UDP sockets are not).
//! * `dev`: bytes and packets received (in) and transmitted (out), summed over every interface
//!   but `lo`, whose traffic never leaves the host.
//! * `if_inet6`, `route`: which interface a local address belongs to (see below).
//!
//! `tcp` and `udp` and `dev` must exist. `tcp6` and `udp6` are absent when IPv6 is disabled, and
//! `if_inet6` and `route` only refine the interface names, so a missing one of those is not an
//! error.
//!
//! # Interface names
//!
//! The document names the interface of each port and connection, but a socket table only holds
//! addresses. The mapping chosen, most reliable first:
//!
//! * Wildcard addresses (`0.0.0.0`, `::`) listen on every interface: no interface (`None`).
//! * Loopback addresses (`127.0.0.0/8`, `::1`) are `lo`.
//! * IPv6: the interface listing the address in `if_inet6`, which names it exactly. An address
//!   listed on more than one interface (the same link-local address on two links) is ambiguous
//!   and gets `None`: the socket tables do not record the scope.
//! * IPv4: `/proc` has no file listing addresses with their interfaces. `fib_trie` marks local
//!   addresses (`/32 host LOCAL`) but names no interface at all, so it cannot help. The kernel
//!   adds a connected route (no gateway) to the address's subnet on the address's interface,
//!   and `route` (the main table) names that interface, so an IPv4 address maps to the
//!   interface of the longest-prefix gatewayless route containing it. An address without one
//!   (a `/32` address, `route` missing) or with equally long routes on two interfaces gets
//!   `None`. This is a heuristic: a more specific device route to part of the subnet through
//!   another interface would win.
//! * IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, dual-stack sockets serving IPv4 clients) are
//!   treated as the IPv4 address, and a remote one is reported as plain `a.b.c.d:port`.
//!
//! # Bounds
//!
//! A file of more than [`MAX_LINES`] lines or [`MAX_FILE_BYTES`] bytes is refused with
//! [`MetricsError::TooLarge`] rather than read whole or reported truncated: the work stays
//! bounded, and a published document is never silently incomplete.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// Most lines read from one file; a host with more sockets than this is refused (see the
/// module documentation).
pub const MAX_LINES: usize = 100_000;

/// Most bytes read from one file, so that a few very long lines cannot defeat [`MAX_LINES`].
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// TCP state LISTEN in the `st` column.
const TCP_LISTEN: u8 = 0x0A;
/// TCP state ESTABLISHED in the `st` column.
const TCP_ESTABLISHED: u8 = 0x01;
/// State of an unconnected UDP socket (TCP_CLOSE), which `ss -ul` lists as listening.
const UDP_UNCONN: u8 = 0x07;

/// Route flags from `<linux/route.h>`.
const RTF_UP: u32 = 0x0001;
const RTF_GATEWAY: u32 = 0x0002;
const RTF_REJECT: u32 = 0x0200;

/// What the Device Defender document reports, gathered by [`collect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// Listening TCP ports, sorted by (port, interface) and deduplicated, so that a port
    /// listening on both IPv4 and IPv6 appears once.
    pub listening_tcp_ports: Vec<Port>,
    /// Listening (unconnected, bound) UDP ports, sorted and deduplicated like the TCP ones.
    pub listening_udp_ports: Vec<Port>,
    /// Traffic counters summed over all interfaces but `lo`.
    pub network_stats: NetworkStats,
    /// Established TCP connections, one entry per connection, sorted by local port, local
    /// interface and remote address so that reports are stable.
    pub established_tcp: Vec<Connection>,
}

/// A listening port; `interface` is `None` for wildcard or unmappable addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// The local port number.
    pub port: u16,
    /// The interface the socket is bound to, when its address names one.
    pub interface: Option<String>,
}

/// Traffic counters from `net/dev`, excluding the loopback interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes transmitted.
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets transmitted.
    pub packets_out: u64,
}

/// An established TCP connection, as the document describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The interface of the local address, when it can be mapped.
    pub local_interface: Option<String>,
    /// The local port.
    pub local_port: u16,
    /// The peer as `ip:port`, or `[ip]:port` for IPv6.
    pub remote_addr: String,
}

/// Why [`collect`] failed; every variant names the file, and parse errors the line, so that a
/// bad `/proc` volume mapping or an unexpected kernel format can be found from the log.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line of a file is not in the expected format.
    #[error("{}:{line}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// A file exceeds [`MAX_LINES`] or [`MAX_FILE_BYTES`].
    #[error("{}: more than {limit} {unit}, not read further", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit exceeded.
        limit: u64,
        /// `"lines"` or `"bytes"`.
        unit: &'static str,
    },
}

/// Gathers the Device Defender metrics from the `/proc` tree at `proc_root`.
pub fn collect(proc_root: &Path) -> Result<Metrics, MetricsError> {
    let net = proc_root.join("net");
    let interfaces = Interfaces::load(&net)?;

    let mut listening_tcp_ports = Vec::new();
    let mut established = Vec::new();
    for (name, v6, optional) in [("tcp", false, false), ("tcp6", true, true)] {
        read_socket_table(&net.join(name), v6, optional, |entry| match entry.state {
            TCP_LISTEN if entry.local.port() != 0 => listening_tcp_ports.push(Port {
                port: entry.local.port(),
                interface: interfaces.lookup(entry.local.ip()),
            }),
            TCP_ESTABLISHED => established.push((
                entry.local.port(),
                interfaces.lookup(entry.local.ip()),
                unmap_v4(entry.remote),
            )),
            _ => {}
        })?;
    }

    let mut listening_udp_ports = Vec::new();
    for (name, v6, optional) in [("udp", false, false), ("udp6", true, true)] {
        read_socket_table(&net.join(name), v6, optional, |entry| {
            if entry.state == UDP_UNCONN && entry.local.port() != 0 {
                listening_udp_ports.push(Port {
                    port: entry.local.port(),
                    interface: interfaces.lookup(entry.local.ip()),
                });
            }
        })?;
    }

    let network_stats = read_net_dev(&net.join("dev"))?;

    listening_tcp_ports.sort();
    listening_tcp_ports.dedup();
    listening_udp_ports.sort();
    listening_udp_ports.dedup();
    // Sorting on the parsed remote address keeps 10.0.0.9 before 10.0.0.10.
    established.sort();
    let established_tcp = established
        .into_iter()
        .map(|(local_port, local_interface, remote)| Connection {
            local_interface,
            local_port,
            remote_addr: remote.to_string(),
        })
        .collect();

    tracing::debug!(
        proc_root = %proc_root.display(),
        tcp = listening_tcp_ports.len(),
        udp = listening_udp_ports.len(),
        "device defender metrics collected"
    );
    Ok(Metrics {
        listening_tcp_ports,
        listening_udp_ports,
        network_stats,
        established_tcp,
    })
}

impl Metrics {
    /// The Device Defender device-side metrics document (version 1.0), with `report_id` in its
    /// header; AWS IoT rejects a report whose id is not greater than the previous one, so the
    /// caller chooses it (typically the Unix time in seconds). Interfaces that could not be
    /// named are omitted, as the format allows.
    pub fn report(&self, report_id: u64) -> Value {
        let connections: Vec<Value> = self
            .established_tcp
            .iter()
            .map(|c| {
                let mut obj = Map::new();
                if let Some(interface) = &c.local_interface {
                    obj.insert("local_interface".into(), interface.as_str().into());
                }
                obj.insert("local_port".into(), c.local_port.into());
                obj.insert("remote_addr".into(), c.remote_addr.as_str().into());
                Value::Object(obj)
            })
            .collect();
        json!({
            "header": { "report_id": report_id, "version": "1.0" },
            "metrics": {
                "listening_tcp_ports": ports_json(&self.listening_tcp_ports),
                "listening_udp_ports": ports_json(&self.listening_udp_ports),
                "network_stats": {
                    "bytes_in": self.network_stats.bytes_in,
                    "bytes_out": self.network_stats.bytes_out,
                    "packets_in": self.network_stats.packets_in,
                    "packets_out": self.network_stats.packets_out,
                },
                "tcp_connections": {
                    "established_connections": {
                        "total": connections.len(),
                        "connections": connections,
                    }
                }
            }
        })
    }
}

fn ports_json(ports: &[Port]) -> Value {
    let list: Vec<Value> = ports
        .iter()
        .map(|p| {
            let mut obj = Map::new();
            if let Some(interface) = &p.interface {
                obj.insert("interface".into(), interface.as_str().into());
            }
            obj.insert("port".into(), p.port.into());
            Value::Object(obj)
        })
        .collect();
    json!({ "total": list.len(), "ports": list })
}

/// Reports an IPv4-mapped IPv6 peer (a dual-stack socket's IPv4 client) as the IPv4 peer.
fn unmap_v4(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Calls `f(line_number, line)` for each line of `path` (numbered from 1, without the line
/// ending), within [`MAX_LINES`] and [`MAX_FILE_BYTES`]. Returns `Ok(false)` when the file does
/// not exist and `optional` is set. An `Err(reason)` from `f` becomes [`MetricsError::Parse`].
fn for_each_line(
    path: &Path,
    optional: bool,
    mut f: impl FnMut(usize, &str) -> Result<(), String>,
) -> Result<bool, MetricsError> {
    let io_error = |source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if optional && e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "optional file absent");
            return Ok(false);
        }
        Err(e) => return Err(io_error(e)),
    };
    let mut reader = BufReader::new(file.take(MAX_FILE_BYTES + 1));
    let mut buf = Vec::new();
    let mut total: u64 = 0;
    let mut line_number = 0;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_error)?;
        if n == 0 {
            return Ok(true);
        }
        total += n as u64;
        if total > MAX_FILE_BYTES {
            return Err(MetricsError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_FILE_BYTES,
                unit: "bytes",
            });
        }
        line_number += 1;
        if line_number > MAX_LINES {
            return Err(MetricsError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_LINES as u64,
                unit: "lines",
            });
        }
        // Interface names may in principle hold any bytes; lossy decoding never fails, and
        // every other field must be ASCII hex or digits, which the parsers check.
        let line = String::from_utf8_lossy(&buf);
        f(line_number, line.trim_end_matches(['\n', '\r'])).map_err(|reason| {
            MetricsError::Parse {
                path: path.to_path_buf(),
                line: line_number,
                reason,
            }
        })?;
    }
}

/// One row of `net/tcp[6]` or `net/udp[6]`.
#[derive(Debug)]
struct SocketEntry {
    local: SocketAddr,
    remote: SocketAddr,
    state: u8,
}

/// Reads a socket table, calling `f` for each socket.
fn read_socket_table(
    path: &Path,
    v6: bool,
    optional: bool,
    mut f: impl FnMut(SocketEntry),
) -> Result<(), MetricsError> {
    for_each_line(path, optional, |_, line| {
        if let Some(entry) = parse_socket_line(line, v6)? {
            f(entry);
        }
        Ok(())
    })?;
    Ok(())
}

/// Parses `sl local_address rem_address st ...`; `None` for the header and blank lines.
/// Columns after `st` are ignored: they differ between kernels and protocols.
fn parse_socket_line(line: &str, v6: bool) -> Result<Option<SocketEntry>, String> {
    let mut cols = line.split_whitespace();
    let Some(sl) = cols.next() else {
        return Ok(None);
    };
    if sl == "sl" {
        return Ok(None);
    }
    let (Some(local), Some(remote), Some(state)) = (cols.next(), cols.next(), cols.next()) else {
        return Err("expected at least 4 columns: sl local_address rem_address st".into());
    };
    match sl.strip_suffix(':') {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => return Err(format!("bad slot number {sl:?}")),
    }
    let local = parse_hex_endpoint(local, v6).map_err(|e| format!("local_address: {e}"))?;
    let remote = parse_hex_endpoint(remote, v6).map_err(|e| format!("rem_address: {e}"))?;
    let state = match hex_u32(state) {
        Some(st) if state.len() == 2 => st as u8,
        _ => return Err(format!("bad state {state:?}")),
    };
    Ok(Some(SocketEntry {
        local,
        remote,
        state,
    }))
}

/// Parses an `ADDR:PORT` endpoint: `ADDR` is 8 hex digits (IPv4) or 32 (IPv6, four 32-bit
/// words), each word the kernel's network-order bytes printed as a host-order integer, so
/// `to_ne_bytes` recovers the address bytes on any architecture. `PORT` is plain hex.
fn parse_hex_endpoint(s: &str, v6: bool) -> Result<SocketAddr, String> {
    let bad = || format!("bad address {s:?}");
    let (addr, port) = s.split_once(':').ok_or_else(bad)?;
    if port.is_empty() || port.len() > 4 {
        return Err(bad());
    }
    let port = hex_u32(port).ok_or_else(bad)? as u16;
    let ip = if v6 {
        if addr.len() != 32 {
            return Err(bad());
        }
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
            let word = addr
                .get(i * 8..i * 8 + 8)
                .and_then(hex_u32)
                .ok_or_else(bad)?;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        if addr.len() != 8 {
            return Err(bad());
        }
        IpAddr::V4(parse_hex_ipv4(addr).ok_or_else(bad)?)
    };
    Ok(SocketAddr::new(ip, port))
}

/// An IPv4 address printed as a host-order 32-bit hex integer (`tcp`, `route`).
fn parse_hex_ipv4(s: &str) -> Option<Ipv4Addr> {
    if s.len() != 8 {
        return None;
    }
    hex_u32(s).map(|word| Ipv4Addr::from(word.to_ne_bytes()))
}

/// Parses up to 8 hex digits; unlike `from_str_radix` alone, rejects a sign.
fn hex_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Parses a decimal counter of `net/dev`.
fn dec_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Sums the `net/dev` counters over all interfaces but `lo`.
fn read_net_dev(path: &Path) -> Result<NetworkStats, MetricsError> {
    let mut stats = NetworkStats::default();
    for_each_line(path, false, |_, line| {
        // The two header lines are the only ones with '|'; blank lines carry nothing.
        if line.contains('|') || line.trim().is_empty() {
            return Ok(());
        }
        // Interface names cannot contain ':', so the first one ends the name.
        let (name, counters) = line
            .split_once(':')
            .ok_or("expected \"interface: counters\"")?;
        let name = name.trim();
        if name.is_empty() {
            return Err("empty interface name".into());
        }
        let counters: Vec<&str> = counters.split_whitespace().collect();
        if counters.len() < 10 {
            return Err(format!(
                "expected at least 10 counters, found {}",
                counters.len()
            ));
        }
        let counter =
            |i: usize| dec_u64(counters[i]).ok_or_else(|| format!("bad counter {:?}", counters[i]));
        // Receive: bytes packets errs drop fifo frame compressed multicast;
        // transmit: bytes packets ...
        let (rx_bytes, rx_packets, tx_bytes, tx_packets) =
            (counter(0)?, counter(1)?, counter(8)?, counter(9)?);
        if name != "lo" {
            stats.bytes_in = stats.bytes_in.saturating_add(rx_bytes);
            stats.packets_in = stats.packets_in.saturating_add(rx_packets);
            stats.bytes_out = stats.bytes_out.saturating_add(tx_bytes);
            stats.packets_out = stats.packets_out.saturating_add(tx_packets);
        }
        Ok(())
    })?;
    Ok(stats)
}

/// A gatewayless IPv4 route from `net/route`: a subnet reachable directly on `interface`.
#[derive(Debug)]
struct LinkRoute {
    network: u32,
    mask: u32,
    interface: String,
}

/// Maps local addresses to interface names (see the module documentation).
#[derive(Debug, Default)]
struct Interfaces {
    routes: Vec<LinkRoute>,
    /// `None` when the address is on more than one interface.
    v6: HashMap<Ipv6Addr, Option<String>>,
}

impl Interfaces {
    fn load(net: &Path) -> Result<Self, MetricsError> {
        let mut interfaces = Interfaces::default();

        // `addr ifindex prefixlen scope flags name`; the address is in plain byte order.
        for_each_line(&net.join("if_inet6"), true, |_, line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.is_empty() {
                return Ok(());
            }
            let &[addr, _, _, _, _, name, ..] = cols.as_slice() else {
                return Err("expected 6 columns: address index prefix scope flags name".into());
            };
            let bad = || format!("bad address {addr:?}");
            if addr.len() != 32 {
                return Err(bad());
            }
            let mut bytes = [0u8; 16];
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = addr
                    .get(i * 2..i * 2 + 2)
                    .and_then(hex_u32)
                    .ok_or_else(bad)? as u8;
            }
            interfaces
                .v6
                .entry(Ipv6Addr::from(bytes))
                .and_modify(|known| {
                    if known.as_deref() != Some(name) {
                        *known = None;
                    }
                })
                .or_insert_with(|| Some(name.to_owned()));
            Ok(())
        })?;

        // `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`
        for_each_line(&net.join("route"), true, |_, line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.is_empty() || cols[0] == "Iface" {
                return Ok(());
            }
            let &[name, destination, gateway, flags, _, _, _, mask, ..] = cols.as_slice() else {
                return Err("expected at least 8 columns: Iface Destination Gateway Flags RefCnt Use Metric Mask".into());
            };
            let field = |what: &str, value: &str| {
                parse_hex_ipv4(value)
                    .map(u32::from)
                    .ok_or_else(|| format!("bad {what} {value:?}"))
            };
            let (destination, gateway, mask) = (
                field("Destination", destination)?,
                field("Gateway", gateway)?,
                field("Mask", mask)?,
            );
            let flags = hex_u32(flags).ok_or_else(|| format!("bad Flags {flags:?}"))?;
            let link = flags & RTF_UP != 0 && flags & (RTF_GATEWAY | RTF_REJECT) == 0;
            // A gatewayless default route (a tunnel) says nothing about local addresses.
            if link && gateway == 0 && mask != 0 {
                interfaces.routes.push(LinkRoute {
                    network: destination & mask,
                    mask,
                    interface: name.to_owned(),
                });
            }
            Ok(())
        })?;

        Ok(interfaces)
    }

    /// The interface of local address `ip`, or `None` for wildcards and unknown addresses.
    fn lookup(&self, ip: IpAddr) -> Option<String> {
        match ip {
            IpAddr::V4(v4) => self.lookup_v4(v4),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    self.lookup_v4(v4)
                } else if v6.is_unspecified() {
                    None
                } else if v6.is_loopback() {
                    Some("lo".to_owned())
                } else {
                    self.v6.get(&v6).cloned().flatten()
                }
            }
        }
    }

    fn lookup_v4(&self, ip: Ipv4Addr) -> Option<String> {
        if ip.is_unspecified() {
            return None;
        }
        if ip.is_loopback() {
            return Some("lo".to_owned());
        }
        let ip = u32::from(ip);
        let mut best: Option<(u32, Option<&str>)> = None;
        for route in self.routes.iter().filter(|r| ip & r.mask == r.network) {
            let prefix = route.mask.count_ones();
            best = match best {
                Some((len, _)) if len > prefix => best,
                Some((len, Some(name))) if len == prefix && name == route.interface => best,
                // Equally specific routes on two interfaces: ambiguous.
                Some((len, _)) if len == prefix => Some((len, None)),
                _ => Some((prefix, Some(route.interface.as_str()))),
            };
        }
        best.and_then(|(_, name)| name).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::fs;
    use std::process::Command;
    use std::time::Duration;

    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0505A8C0:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
   3: 0500000A:0016 0900000A:C738 01 00000000:00000000 02:000A7A1C 00000000     0        0 1004 2 0000000000000000 20 4 29 10 -1
   4: 0500000A:0016 0A00000A:D431 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";

    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
   2: 000000FD000000000000000002000000:22B3 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 100 0 0 10 0
   3: 0000000000000000FFFF00000500000A:22B3 0000000000000000FFFF00000700000A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2004 1 0000000000000000 20 4 30 10 -1
   4: 000000FD000000000000000002000000:22B3 000000FD000000000000000009000000:9C41 01 00000000:00000000 00:00000000 00000000     0        0 2005 1 0000000000000000 20 4 30 10 -1
";

    const UDP: &str = "\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  222: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3001 2 0000000000000000 0
 1234: 0500000A:A000 0900000A:0035 01 00000000:00000000 00:00000000 00000000     0        0 3002 2 0000000000000000 0
";

    const UDP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000000000000000000000000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 4001 2 0000000000000000 0
";

    const DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:    5000      50    0    0    0     0          0         0     3000      30    0    0    0     0       0          0
 wlan0:     700       7    1    0    0     0          0         0      300       3    0    0    0     0       0          0
";

    const IF_INET6: &str = "\
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 02 40 00 80     eth0
fe80000000000000020c29fffe123456 02 40 20 80     eth0
";

    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    fn fake_proc(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("net")).expect("mkdir net");
        for (name, content) in files {
            fs::write(dir.path().join("net").join(name), content).expect("write");
        }
        dir
    }

    fn full_fake_proc() -> tempfile::TempDir {
        fake_proc(&[
            ("tcp", TCP),
            ("tcp6", TCP6),
            ("udp", UDP),
            ("udp6", UDP6),
            ("dev", DEV),
            ("if_inet6", IF_INET6),
            ("route", ROUTE),
        ])
    }

    fn port(port: u16, interface: Option<&str>) -> Port {
        Port {
            port,
            interface: interface.map(str::to_owned),
        }
    }

    fn conn(local_interface: Option<&str>, local_port: u16, remote_addr: &str) -> Connection {
        Connection {
            local_interface: local_interface.map(str::to_owned),
            local_port,
            remote_addr: remote_addr.to_owned(),
        }
    }

    // The hand-written tables are in x86 (little-endian) order, as the kernel prints them there.
    #[cfg_attr(target_endian = "big", ignore)]
    #[test]
    fn fake_proc_tree_gives_exact_metrics_and_document() {
        let dir = full_fake_proc();
        let metrics = collect(dir.path()).expect("collect");
        let expected = Metrics {
            listening_tcp_ports: vec![
                // 0.0.0.0:22 and [::]:22 once.
                port(22, None),
                // 127.0.0.1:631 and [::1]:631 once.
                port(631, Some("lo")),
                // [fd00::2]:8883, named by if_inet6.
                port(8883, Some("eth0")),
                // 192.168.5.5:9000: no route covers it.
                port(9000, None),
            ],
            listening_udp_ports: vec![port(68, None), port(5353, None)],
            network_stats: NetworkStats {
                bytes_in: 5700,
                bytes_out: 3300,
                packets_in: 57,
                packets_out: 33,
            },
            established_tcp: vec![
                // 10.0.0.5 is in 10.0.0.0/24 on eth0; TIME_WAIT is not established.
                conn(Some("eth0"), 22, "10.0.0.9:51000"),
                // ::ffff:10.0.0.5 <- ::ffff:10.0.0.7 is reported as IPv4.
                conn(Some("eth0"), 8883, "10.0.0.7:40000"),
                conn(Some("eth0"), 8883, "[fd00::9]:40001"),
            ],
        };
        assert_eq!(metrics, expected);

        let expected_json = json!({
            "header": { "report_id": 1529963534u64, "version": "1.0" },
            "metrics": {
                "listening_tcp_ports": {
                    "ports": [
                        { "port": 22 },
                        { "interface": "lo", "port": 631 },
                        { "interface": "eth0", "port": 8883 },
                        { "port": 9000 }
                    ],
                    "total": 4
                },
                "listening_udp_ports": {
                    "ports": [ { "port": 68 }, { "port": 5353 } ],
                    "total": 2
                },
                "network_stats": {
                    "bytes_in": 5700, "bytes_out": 3300, "packets_in": 57, "packets_out": 33
                },
                "tcp_connections": {
                    "established_connections": {
                        "connections": [
                            { "local_interface": "eth0", "local_port": 22, "remote_addr": "10.0.0.9:51000" },
                            { "local_interface": "eth0", "local_port": 8883, "remote_addr": "10.0.0.7:40000" },
                            { "local_interface": "eth0", "local_port": 8883, "remote_addr": "[fd00::9]:40001" }
                        ],
                        "total": 3
                    }
                }
            }
        });
        assert_eq!(metrics.report(1529963534), expected_json);
    }

    #[cfg_attr(target_endian = "big", ignore)]
    #[test]
    fn optional_files_may_be_missing() {
        let dir = fake_proc(&[("tcp", TCP), ("udp", UDP), ("dev", DEV)]);
        let metrics = collect(dir.path()).expect("IPv6 disabled is not an error");
        assert_eq!(
            metrics.listening_tcp_ports,
            vec![port(22, None), port(631, Some("lo")), port(9000, None)]
        );
        assert_eq!(metrics.listening_udp_ports, vec![port(68, None)]);
        // Without net/route, 10.0.0.5 cannot be named.
        assert_eq!(
            metrics.established_tcp,
            vec![conn(None, 22, "10.0.0.9:51000")]
        );
    }

    #[test]
    fn missing_required_file_names_it() {
        let dir = fake_proc(&[("tcp", TCP), ("dev", DEV)]);
        let err = collect(dir.path()).expect_err("udp is required");
        assert!(matches!(err, MetricsError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("net/udp"), "{err}");
    }

    /// Replaces line `line` (from 1) of `content` and returns the error `collect` gives.
    fn error_with(file: &str, line: usize, replacement: &str) -> MetricsError {
        let mut files = [
            ("tcp", TCP.to_owned()),
            ("tcp6", TCP6.to_owned()),
            ("udp", UDP.to_owned()),
            ("udp6", UDP6.to_owned()),
            ("dev", DEV.to_owned()),
            ("if_inet6", IF_INET6.to_owned()),
            ("route", ROUTE.to_owned()),
        ];
        let entry = files.iter_mut().find(|(n, _)| *n == file).expect("file");
        let mut lines: Vec<&str> = entry.1.lines().collect();
        lines[line - 1] = replacement;
        entry.1 = lines.join("\n");
        let borrowed: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
        let dir = fake_proc(&borrowed);
        collect(dir.path()).expect_err("malformed line")
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let cases = [
            ("tcp", 3, "   1: 0100007F:0277"),
            ("tcp", 2, "   0: ZZ00007F:0016 00000000:0000 0A"),
            ("tcp", 4, "   2: 0100007F:+016 00000000:0000 0A"),
            ("tcp", 2, "   0: 0100007F:12345 00000000:0000 0A"),
            ("tcp", 2, "   0: 0100007F:0016 00000000:0000 XYZ"),
            ("tcp", 2, "garbage 0100007F:0016 00000000:0000 0A"),
            ("tcp6", 3, "   1: 0100007F:0016 00000000:0000 0A"),
            (
                "tcp6",
                2,
                "   0: 00000000000000000000000000000000 00000000000000000000000000000000:0000 0A",
            ),
            ("udp", 2, "  222: 00000000:0044 00000000:0000"),
            ("udp6", 2, "  100: 0000:14E9 0000:0000 07"),
            ("dev", 4, "  eth0: 5000 50 0 0 0 0 0 0 3000"),
            ("dev", 3, "    lo: 1000 -10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0"),
            ("dev", 5, "wlan0 700 7"),
            ("if_inet6", 2, "fd00::2 02 40 00 80 eth0"),
            ("if_inet6", 1, "00000000000000000000000000000001 01 80"),
            ("route", 3, "eth0\t0000000A\t00000000\t0001"),
            (
                "route",
                2,
                "eth0\tnothex!!\t0100000A\t0003\t0\t0\t0\t00000000",
            ),
        ];
        for (file, line, replacement) in cases {
            let err = error_with(file, line, replacement);
            match &err {
                MetricsError::Parse { path, line: at, .. } => {
                    assert!(path.ends_with(format!("net/{file}")), "{err}");
                    assert_eq!(*at, line, "{err}");
                }
                other => panic!("expected a parse error for {file}:{line}, got {other:?}"),
            }
            let message = err.to_string();
            assert!(
                message.contains(&format!("net/{file}:{line}: ")),
                "{message}"
            );
        }
    }

    #[test]
    fn too_many_lines_are_refused() {
        let mut tcp = String::from(TCP);
        tcp.push_str(&"\n".repeat(MAX_LINES));
        let dir = fake_proc(&[("tcp", &tcp), ("udp", UDP), ("dev", DEV)]);
        let err = collect(dir.path()).expect_err("over the limit");
        assert!(
            matches!(err, MetricsError::TooLarge { unit: "lines", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("net/tcp"), "{err}");
    }

    #[test]
    fn interface_lookup_rules() {
        let interfaces = Interfaces {
            routes: vec![
                LinkRoute {
                    network: u32::from(Ipv4Addr::new(10, 0, 0, 0)),
                    mask: u32::from(Ipv4Addr::new(255, 0, 0, 0)),
                    interface: "eth0".into(),
                },
                LinkRoute {
                    network: u32::from(Ipv4Addr::new(10, 1, 0, 0)),
                    mask: u32::from(Ipv4Addr::new(255, 255, 0, 0)),
                    interface: "wg0".into(),
                },
                LinkRoute {
                    network: u32::from(Ipv4Addr::new(172, 16, 0, 0)),
                    mask: u32::from(Ipv4Addr::new(255, 255, 0, 0)),
                    interface: "br0".into(),
                },
                LinkRoute {
                    network: u32::from(Ipv4Addr::new(172, 16, 0, 0)),
                    mask: u32::from(Ipv4Addr::new(255, 255, 0, 0)),
                    interface: "br1".into(),
                },
            ],
            v6: HashMap::from([
                ("fe80::1".parse().expect("ip"), None),
                ("2001:db8::1".parse().expect("ip"), Some("eth0".to_owned())),
            ]),
        };
        let lookup = |s: &str| interfaces.lookup(s.parse().expect("ip"));
        assert_eq!(lookup("0.0.0.0"), None);
        assert_eq!(lookup("::"), None);
        assert_eq!(lookup("127.0.0.53").as_deref(), Some("lo"));
        assert_eq!(lookup("::1").as_deref(), Some("lo"));
        assert_eq!(lookup("::ffff:127.0.0.1").as_deref(), Some("lo"));
        assert_eq!(lookup("10.2.3.4").as_deref(), Some("eth0"));
        assert_eq!(lookup("10.1.3.4").as_deref(), Some("wg0"));
        assert_eq!(lookup("::ffff:10.1.3.4").as_deref(), Some("wg0"));
        assert_eq!(lookup("172.16.0.1"), None, "ambiguous");
        assert_eq!(lookup("192.168.1.1"), None);
        assert_eq!(lookup("fe80::1"), None, "ambiguous");
        assert_eq!(lookup("2001:db8::1").as_deref(), Some("eth0"));
        assert_eq!(lookup("2001:db8::2"), None);
    }

    // ---- against this machine's /proc ----

    /// Lines of `ss <args>`, or `None` when `ss` is not installed.
    fn ss(args: &[&str]) -> Option<Vec<String>> {
        match Command::new("ss").args(args).output() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => panic!("running ss: {e}"),
            Ok(out) => {
                assert!(out.status.success(), "ss {args:?}: {:?}", out.status);
                let text = String::from_utf8(out.stdout).expect("utf-8");
                Some(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_owned)
                        .collect(),
                )
            }
        }
    }

    /// The local ports of `ss -H -l` lines: `State Recv-Q Send-Q Local:Port Peer:Port`.
    fn ss_ports(lines: &[String]) -> BTreeSet<u16> {
        lines
            .iter()
            .map(|l| {
                let local = l.split_whitespace().nth(3).expect("local column");
                let (_, port) = local.rsplit_once(':').expect("port");
                port.parse().expect("port number")
            })
            .collect()
    }

    /// Sums of `/proc/net/dev` without `lo`, computed independently of `read_net_dev`.
    fn proc_net_dev_sums() -> [u64; 4] {
        let text = fs::read_to_string("/proc/net/dev").expect("/proc/net/dev");
        let mut sums = [0u64; 4];
        for line in text.lines().skip(2) {
            let (name, rest) = line.split_once(':').expect("colon");
            if name.trim() == "lo" {
                continue;
            }
            let n: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().expect("counter"))
                .collect();
            sums[0] += n[0];
            sums[1] += n[8];
            sums[2] += n[1];
            sums[3] += n[9];
        }
        sums
    }

    #[cfg(target_os = "linux")]
    #[allow(clippy::print_stderr)]
    #[test]
    fn real_proc_agrees_with_ss() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let listen_port = listener.local_addr().expect("addr").port();
        let client = std::net::TcpStream::connect(("127.0.0.1", listen_port)).expect("connect");
        let (_server, _) = listener.accept().expect("accept");
        let client_port = client.local_addr().expect("addr").port();

        let proc_root = Path::new("/proc");
        let metrics = collect(proc_root).expect("collect from /proc");

        // Our own connection and listener, both on loopback.
        assert!(
            metrics
                .listening_tcp_ports
                .contains(&port(listen_port, Some("lo"))),
            "{:?}",
            metrics.listening_tcp_ports
        );
        let remote = format!("127.0.0.1:{listen_port}");
        assert!(
            metrics
                .established_tcp
                .contains(&conn(Some("lo"), client_port, &remote)),
            "{:?}",
            metrics.established_tcp
        );
        let remote = format!("127.0.0.1:{client_port}");
        assert!(
            metrics
                .established_tcp
                .contains(&conn(Some("lo"), listen_port, &remote)),
            "{:?}",
            metrics.established_tcp
        );

        // Counters only grow, so ours lie between two independent readings; an interface
        // removed in between (a container's veth) lowers the sums, hence a few attempts.
        let mut last = None;
        for _ in 0..3 {
            let before = proc_net_dev_sums();
            let s = collect(proc_root).expect("collect").network_stats;
            let after = proc_net_dev_sums();
            let ours = [s.bytes_in, s.bytes_out, s.packets_in, s.packets_out];
            if (0..4).all(|i| before[i] <= ours[i] && ours[i] <= after[i]) {
                last = None;
                break;
            }
            last = Some((before, ours, after));
        }
        assert!(
            last.is_none(),
            "net/dev sums (before, ours, after): {last:?}"
        );

        if ss(&["-V"]).is_none() {
            eprintln!("skipping the comparison with ss: ss is not installed");
            return;
        }

        // Sockets come and go: retry until the ports seen by ss before and after a collection
        // bracket ours (those in both are ours, ours are in either).
        for (proto, args) in [("tcp", ["-Htln"]), ("udp", ["-Huln"])] {
            let mut last = None;
            for _ in 0..5 {
                let first = ss_ports(&ss(&args).expect("ss"));
                let metrics = collect(proc_root).expect("collect");
                let second = ss_ports(&ss(&args).expect("ss"));
                let ports = if proto == "tcp" {
                    &metrics.listening_tcp_ports
                } else {
                    &metrics.listening_udp_ports
                };
                let ours: BTreeSet<u16> = ports.iter().map(|p| p.port).collect();
                let both: BTreeSet<u16> = first.intersection(&second).copied().collect();
                let either: BTreeSet<u16> = first.union(&second).copied().collect();
                if both.is_subset(&ours) && ours.is_subset(&either) {
                    last = None;
                    break;
                }
                last = Some((first, ours, second));
                std::thread::sleep(Duration::from_millis(200));
            }
            assert!(
                last.is_none(),
                "{proto} listening ports (ss, ours, ss): {last:?}"
            );
        }

        // Established connections: the count within a tolerance of what ss sees around it.
        let args = ["-Htn", "state", "established"];
        let first = ss(&args).expect("ss").len();
        let metrics = collect(proc_root).expect("collect");
        let second = ss(&args).expect("ss").len();
        let ours = metrics.established_tcp.len();
        let slack = 5 + first.max(second) / 10;
        assert!(
            first.min(second).saturating_sub(slack) <= ours && ours <= first.max(second) + slack,
            "established: ss {first} and {second}, ours {ours}"
        );
        drop(client);
    }
}
