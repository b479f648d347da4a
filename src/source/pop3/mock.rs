//! A scripted in-memory stream for the protocol unit tests (POP3 and
//! POP2), so edge cases of the dialogue are tested without sockets.
//!
//! It plays the server's side of a script: the greeting is there at once,
//! and each reply arrives only once the client has written the command it
//! answers, so "bytes that answer no command" (the in-step checks) mean
//! what they mean on a socket. Replies can be read back in chunks as small
//! as one byte, and the script can end in EOF or an I/O error at any point.
//! Every byte the client writes is recorded, for exact assertions; a
//! command other than the one the script expects fails the test at once.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;

use crate::error::Result;
use crate::net::{TlsContext, Transport};

/// What the server does at one point of the script.
enum Event {
    Data(Vec<u8>),
    /// The connection ends: every later read returns 0.
    Eof,
    /// One read fails with this kind.
    Fail(io::ErrorKind),
}

/// A command line the script waits for, and what the server then sends.
struct Exchange {
    command: Vec<u8>,
    events: Vec<Event>,
}

struct State {
    /// What the server has sent and the client not yet read; the first
    /// `Data` may be partly read (`offset`).
    arrived: VecDeque<Event>,
    offset: usize,
    script: VecDeque<Exchange>,
    /// Everything the client wrote, and each write call on its own.
    written: Vec<u8>,
    writes: Vec<Vec<u8>>,
    /// How much of `written` has been matched against the script.
    matched: usize,
    /// Most bytes one read returns.
    chunk: usize,
    tls: bool,
}

/// The stream handed to the client under test.
pub(crate) struct MockStream {
    state: Rc<RefCell<State>>,
}

/// What the test keeps to look at the stream after the client took it.
#[derive(Clone)]
pub(crate) struct Handle {
    state: Rc<RefCell<State>>,
}

impl MockStream {
    /// A server that sends `first` (the greeting) as soon as the client
    /// connects.
    pub(crate) fn new(first: &[u8]) -> MockStream {
        let mut arrived = VecDeque::new();
        arrived.push_back(Event::Data(first.to_vec()));
        MockStream {
            state: Rc::new(RefCell::new(State {
                arrived,
                offset: 0,
                script: VecDeque::new(),
                written: Vec::new(),
                writes: Vec::new(),
                matched: 0,
                chunk: usize::MAX,
                tls: false,
            })),
        }
    }

    /// Then expects the client to write `command` (one line, without
    /// CRLF) and answers it with `reply`.
    pub(crate) fn on(self, command: &str, reply: &[u8]) -> MockStream {
        self.state.borrow_mut().script.push_back(Exchange {
            command: format!("{command}\r\n").into_bytes(),
            events: vec![Event::Data(reply.to_vec())],
        });
        self
    }

    /// After what was scripted last, the server closes the connection.
    pub(crate) fn then_eof(self) -> MockStream {
        self.push(Event::Eof)
    }

    /// After what was scripted last, a read fails with `kind`.
    pub(crate) fn then_fail(self, kind: io::ErrorKind) -> MockStream {
        self.push(Event::Fail(kind))
    }

    /// Every read returns at most `n` bytes (1 exercises every buffer
    /// boundary).
    pub(crate) fn chunked(self, n: usize) -> MockStream {
        self.state.borrow_mut().chunk = n.max(1);
        self
    }

    pub(crate) fn handle(&self) -> Handle {
        Handle {
            state: self.state.clone(),
        }
    }

    fn push(self, event: Event) -> MockStream {
        {
            let mut st = self.state.borrow_mut();
            match st.script.back_mut() {
                Some(last) => last.events.push(event),
                None => st.arrived.push_back(event),
            }
        }
        self
    }
}

impl Handle {
    /// Everything the client wrote, as text.
    pub(crate) fn written(&self) -> String {
        String::from_utf8_lossy(&self.state.borrow().written).into_owned()
    }

    /// Each write call: with pipelining, a batch of commands is one write.
    pub(crate) fn writes(&self) -> Vec<String> {
        let st = self.state.borrow();
        st.writes
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    /// Forgets what was written so far, so that a test can assert on
    /// what its setup (greeting, login) left out.
    pub(crate) fn clear(&self) {
        let mut st = self.state.borrow_mut();
        assert_eq!(st.matched, st.written.len(), "a command is half written");
        st.written.clear();
        st.writes.clear();
        st.matched = 0;
    }

    /// Scripted commands the client has not sent (yet).
    pub(crate) fn unsent(&self) -> Vec<String> {
        let st = self.state.borrow();
        st.script
            .iter()
            .map(|e| String::from_utf8_lossy(&e.command).trim_end().to_string())
            .collect()
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.state.borrow().tls
    }
}

impl Read for MockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut st = self.state.borrow_mut();
        loop {
            let offset = st.offset;
            let chunk = st.chunk;
            match st.arrived.front() {
                None => {
                    // On a socket: the read timeout.
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the script has nothing more to send",
                    ));
                }
                Some(Event::Eof) => return Ok(0),
                Some(Event::Fail(kind)) => {
                    let kind = *kind;
                    st.arrived.pop_front();
                    return Err(io::Error::new(kind, "scripted failure"));
                }
                Some(Event::Data(data)) => {
                    let n = (data.len() - offset).min(buf.len()).min(chunk);
                    buf[..n].copy_from_slice(&data[offset..offset + n]);
                    if offset + n == data.len() {
                        st.arrived.pop_front();
                        st.offset = 0;
                        if n == 0 {
                            continue;
                        }
                    } else {
                        st.offset += n;
                    }
                    return Ok(n);
                }
            }
        }
    }
}

impl Write for MockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut st = self.state.borrow_mut();
        st.written.extend_from_slice(buf);
        st.writes.push(buf.to_vec());
        // Each complete line answers the next exchange of the script.
        while let Some(end) = st.written[st.matched..].iter().position(|b| *b == b'\n') {
            let line = st.written[st.matched..st.matched + end + 1].to_vec();
            st.matched += end + 1;
            let Some(exchange) = st.script.pop_front() else {
                // Past the script: the server says nothing more.
                continue;
            };
            assert_eq!(
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(&exchange.command),
                "the client wrote a command the script did not expect"
            );
            st.arrived.extend(exchange.events);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MockStream {
    fn is_tls(&self) -> bool {
        self.state.borrow().tls
    }

    fn peek_unread(&self, buf: &mut [u8]) -> usize {
        let st = self.state.borrow();
        let mut n = 0;
        let mut offset = st.offset;
        for event in &st.arrived {
            let Event::Data(data) = event else { break };
            let take = (data.len() - offset).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&data[offset..offset + take]);
            n += take;
            offset = 0;
        }
        n
    }

    /// No handshake: the stream only counts as encrypted from here on.
    fn start_tls(
        self,
        _tls: &TlsContext,
        _host: &str,
        _upgrade: crate::net::Upgrade,
    ) -> Result<MockStream> {
        self.state.borrow_mut().tls = true;
        Ok(self)
    }
}

/// Reads `r` to its end with reads of the given sizes in turn (1 byte
/// included), as a caller filling blocks would: a body decoder must give
/// the same bytes whatever the sizes.
pub(crate) fn read_in_sizes(r: &mut impl Read, sizes: &[usize]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; sizes.iter().copied().max().unwrap_or(1)];
    for k in 0.. {
        let n = r.read(&mut buf[..sizes[k % sizes.len()]]).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}
