//! The TCP socket under rustls, read ahead in large blocks.
//!
//! rustls asks its transport for at most 4 KiB per read, so a TLS record
//! of 16 KiB costs four `recvfrom` calls when it reads the socket itself:
//! about 21,000 system calls for an 85 MB mailbox. Read through this
//! buffer, each call takes what has arrived, up to [`READ_AHEAD`] bytes,
//! and rustls's small reads are served from memory (≈1,400 calls for the
//! same mailbox). Writes go straight to the socket: rustls already writes
//! whole records.
//!
//! Bytes held here are TLS records not yet given to rustls; code that
//! waits on the raw socket (IMAP IDLE) must look at [`Socket::buffered`]
//! first, or it would sleep on data that already came.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Most bytes read from the socket in one call.
const READ_AHEAD: usize = 64 * 1024;

pub struct Socket {
    tcp: TcpStream,
    buf: Box<[u8]>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl Socket {
    pub fn new(tcp: TcpStream) -> Socket {
        Socket {
            tcp,
            buf: vec![0u8; READ_AHEAD].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The connection itself, for timeouts, addresses and `peek`.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Bytes read from the socket and not yet taken.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }
}

impl Read for Socket {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            if out.len() >= self.buf.len() {
                // As large as the buffer: no copy to save.
                return self.tcp.read(out);
            }
            let n = self.tcp.read(&mut self.buf)?;
            self.start = 0;
            self.end = n;
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl Write for Socket {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.tcp.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Small reads get every byte once, in order, across many socket reads.
    #[test]
    fn small_reads_see_every_byte_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            for chunk in sent.chunks(7_919) {
                s.write_all(chunk).unwrap();
            }
        });
        let mut socket = Socket::new(TcpStream::connect(addr).unwrap());
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        loop {
            let n = socket.read(&mut piece).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&piece[..n]);
        }
        writer.join().unwrap();
        assert_eq!(got, data);
        assert_eq!(socket.buffered(), 0);
    }
}
