//! The filter language: words → expression → classic BPF for the kernel, or direct evaluation in user space.

mod compile;
mod eval;
mod expr;
mod words;

pub use compile::LinkHeader;
pub use expr::{Expr, Group, IpNet, Mac, PortRange, Proto, Side, TcpEnd};
pub use words::{filter_words, FilterError, NEGATION};

use crate::bpf::asm::AsmError;
use crate::bpf::Insn;
use crate::limits::MAX_SNAPLEN;
use crate::packet::{LinkType, Tags};
use std::fmt;

/// A parsed filter. All of its groups must match and none of its excluded ones; an empty filter matches
/// everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    expr: Expr,
    program: eval::Program,
}

impl Filter {
    /// Parse command-line tokens, e.g. `["ipsrc", "198.18.0.1", "-tcp"]`.
    pub fn parse(tokens: &[&str]) -> Result<Filter, FilterError> {
        let expr = words::parse(tokens)?;
        let filter = Filter {
            program: eval::Program::of(&expr),
            expr,
        };
        filter
            .compile(MAX_SNAPLEN, LinkHeader::Ethernet)
            .map_err(|e| FilterError {
                token: filter.to_string(),
                expected: e.to_string(),
            })?;
        Ok(filter)
    }

    /// Parse a filter written as one string, words separated by white space.
    pub fn parse_str(text: &str) -> Result<Filter, FilterError> {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        Filter::parse(&tokens)
    }

    /// This filter, and not the TCP packets from or to `end` either.
    pub fn excluding(&self, end: TcpEnd) -> Filter {
        let mut expr = self.expr.clone();
        expr.excluded.push(Group::TcpEnd(end));
        Filter {
            program: eval::Program::of(&expr),
            expr,
        }
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    pub fn is_empty(&self) -> bool {
        self.expr.is_empty()
    }

    /// Over a frame as stored (in a file, in the capture buffer): a tag the kernel stripped is back in
    /// the frame, and looked through with the in-band ones.
    #[inline(always)]
    pub fn matches(&self, frame: &[u8], link: LinkType) -> bool {
        self.program.matches::<false>(frame, link, Tags::Stored)
    }

    /// The same verdict, by a first look that returns at the first field that turns an untagged IPv4
    /// packet away: cheaper where one kind of packet comes again and again, dearer on a random mix,
    /// where `matches` takes no branch on what the frame holds.
    #[inline(always)]
    pub fn matches_returning_early(&self, frame: &[u8], link: LinkType) -> bool {
        self.program.matches::<true>(frame, link, Tags::Stored)
    }

    /// As the kernel sees it: `stripped_tci` is an 802.1Q tag the kernel took out of the frame.
    pub fn matches_stripped(&self, frame: &[u8], stripped_tci: Option<u16>) -> bool {
        self.program
            .matches::<false>(frame, LinkType::Ethernet, Tags::Kernel(stripped_tci))
    }

    /// The classic BPF program over packets with `header` in front; accepted packets are cut to
    /// `snaplen` bytes.
    pub fn compile(&self, snaplen: u32, header: LinkHeader) -> Result<Vec<Insn>, AsmError> {
        compile::compile(&self.expr, snaplen, header)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}
