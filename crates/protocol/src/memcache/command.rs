//! The memcache command set and name lookup.

/// A memcache ASCII command. The first 14 are nutcracker 0.5.0's; the rest
/// are ncproxy extensions (nutcracker closes the connection on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `get <key>+`
    Get,
    /// `gets <key>+`
    Gets,
    /// `set <key> <flags> <exptime> <bytes> [noreply]` + data block
    Set,
    /// `add`, as `set`
    Add,
    /// `replace`, as `set`
    Replace,
    /// `append`, as `set`
    Append,
    /// `prepend`, as `set`
    Prepend,
    /// `cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]` + data block
    Cas,
    /// `incr <key> <value> [noreply]`
    Incr,
    /// `decr <key> <value> [noreply]`
    Decr,
    /// `delete <key> [noreply]`
    Delete,
    /// `touch <key> <exptime> [noreply]`
    Touch,
    /// `version`
    Version,
    /// `quit`
    Quit,
    /// `gat <exptime> <key>+` (extension)
    Gat,
    /// `gats <exptime> <key>+` (extension)
    Gats,
    /// `flush_all [delay] [noreply]` (extension)
    FlushAll,
    /// `verbosity <level> [noreply]` (extension)
    Verbosity,
    /// `stats [args...]` (extension)
    Stats,
    /// meta get `mg <key> <flag>*` (extension)
    MetaGet,
    /// meta set `ms <key> <datalen> <flag>*` + data block (extension)
    MetaSet,
    /// meta delete `md <key> <flag>*` (extension)
    MetaDelete,
    /// meta arithmetic `ma <key> <flag>*` (extension)
    MetaArithmetic,
    /// meta no-op `mn` (extension)
    MetaNoop,
    /// meta debug `me <key> [flags]` (extension)
    MetaDebug,
}

/// Longest command name (`flush_all`, `verbosity`).
pub(crate) const MAX_NAME_LEN: usize = 9;

/// Every command, nutcracker's first, in declaration order.
pub(crate) const ALL: [Command; 25] = [
    Command::Get,
    Command::Gets,
    Command::Set,
    Command::Add,
    Command::Replace,
    Command::Append,
    Command::Prepend,
    Command::Cas,
    Command::Incr,
    Command::Decr,
    Command::Delete,
    Command::Touch,
    Command::Version,
    Command::Quit,
    Command::Gat,
    Command::Gats,
    Command::FlushAll,
    Command::Verbosity,
    Command::Stats,
    Command::MetaGet,
    Command::MetaSet,
    Command::MetaDelete,
    Command::MetaArithmetic,
    Command::MetaNoop,
    Command::MetaDebug,
];

impl Command {
    /// The command's name on the wire (`"get"`, `"flush_all"`, `"mg"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Command::Get => "get",
            Command::Gets => "gets",
            Command::Set => "set",
            Command::Add => "add",
            Command::Replace => "replace",
            Command::Append => "append",
            Command::Prepend => "prepend",
            Command::Cas => "cas",
            Command::Incr => "incr",
            Command::Decr => "decr",
            Command::Delete => "delete",
            Command::Touch => "touch",
            Command::Version => "version",
            Command::Quit => "quit",
            Command::Gat => "gat",
            Command::Gats => "gats",
            Command::FlushAll => "flush_all",
            Command::Verbosity => "verbosity",
            Command::Stats => "stats",
            Command::MetaGet => "mg",
            Command::MetaSet => "ms",
            Command::MetaDelete => "md",
            Command::MetaArithmetic => "ma",
            Command::MetaNoop => "mn",
            Command::MetaDebug => "me",
        }
    }

    /// `get gets gat gats`: multi-key, answered by `VALUE` blocks + `END`.
    pub fn is_retrieval(self) -> bool {
        matches!(
            self,
            Command::Get | Command::Gets | Command::Gat | Command::Gats
        )
    }

    /// `set add replace append prepend cas` (classic storage; `ms` is
    /// [`is_meta`](Self::is_meta)). These carry a data block.
    pub fn is_storage(self) -> bool {
        matches!(
            self,
            Command::Set
                | Command::Add
                | Command::Replace
                | Command::Append
                | Command::Prepend
                | Command::Cas
        )
    }

    /// `mg ms md ma mn me`.
    pub fn is_meta(self) -> bool {
        matches!(
            self,
            Command::MetaGet
                | Command::MetaSet
                | Command::MetaDelete
                | Command::MetaArithmetic
                | Command::MetaNoop
                | Command::MetaDebug
        )
    }

    /// One of nutcracker 0.5.0's 14 commands.
    pub fn in_nutcracker(self) -> bool {
        (self as usize) <= (Command::Quit as usize)
    }

    /// The command named exactly `name`.
    pub(crate) fn lookup(name: &[u8]) -> Option<Command> {
        // By length then bytes: a handful of comparisons at most.
        Some(match name {
            b"get" => Command::Get,
            b"set" => Command::Set,
            b"add" => Command::Add,
            b"cas" => Command::Cas,
            b"gat" => Command::Gat,
            b"gets" => Command::Gets,
            b"incr" => Command::Incr,
            b"decr" => Command::Decr,
            b"quit" => Command::Quit,
            b"gats" => Command::Gats,
            b"touch" => Command::Touch,
            b"stats" => Command::Stats,
            b"append" => Command::Append,
            b"delete" => Command::Delete,
            b"prepend" => Command::Prepend,
            b"replace" => Command::Replace,
            b"version" => Command::Version,
            b"flush_all" => Command::FlushAll,
            b"verbosity" => Command::Verbosity,
            b"mg" => Command::MetaGet,
            b"ms" => Command::MetaSet,
            b"md" => Command::MetaDelete,
            b"ma" => Command::MetaArithmetic,
            b"mn" => Command::MetaNoop,
            b"me" => Command::MetaDebug,
            _ => return None,
        })
    }

    /// Whether some command's name starts with `prefix` (only asked when
    /// the buffer ends inside the name, to fail early on a hopeless one).
    pub(crate) fn is_name_prefix(prefix: &[u8]) -> bool {
        ALL.iter().any(|c| c.name().as_bytes().starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_classes() {
        for (i, &c) in ALL.iter().enumerate() {
            assert_eq!(Command::lookup(c.name().as_bytes()), Some(c));
            assert!(c.name().len() <= MAX_NAME_LEN);
            assert_eq!(c.in_nutcracker(), i < 14, "{c:?}");
            let classes = [c.is_retrieval(), c.is_storage(), c.is_meta()];
            assert!(classes.iter().filter(|&&b| b).count() <= 1, "{c:?}");
        }
        assert_eq!(ALL.iter().filter(|c| c.is_retrieval()).count(), 4);
        assert_eq!(ALL.iter().filter(|c| c.is_storage()).count(), 6);
        assert_eq!(ALL.iter().filter(|c| c.is_meta()).count(), 6);
        assert!(!Command::MetaSet.is_storage());
        assert_eq!(Command::lookup(b"GET"), None);
        assert_eq!(Command::lookup(b"ge"), None);
        assert!(Command::is_name_prefix(b"flush_"));
        assert!(Command::is_name_prefix(b"m"));
        assert!(!Command::is_name_prefix(b"gex"));
        assert!(!Command::is_name_prefix(b"mx"));
    }
}
