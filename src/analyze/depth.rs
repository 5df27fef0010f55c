//! How deep a statement's syntax tree can be, read from its tokens without
//! parsing, and a stack big enough to parse, walk and drop a tree that deep.
//!
//! sqlparser builds long operator chains (`0+1+1+…`, `a OR b OR …`,
//! `x::text::text…`, `… UNION …`) as left-deep trees, and walking, cloning,
//! printing or dropping such a tree recurses once per level. A 12 KB
//! statement is enough to overflow a tokio worker's stack, which aborts the
//! whole process. The bound computed here is an over-estimate of the tree's
//! depth: every token of a comma-free run that can open a level counts as
//! one (operators, casts, keywords, brackets; not literals and plain
//! names), bracketed groups add their own depth on top, and set operations
//! and joins count across commas. Statements within
//! [`MAX_NESTING`] run on a stack sized for their bound; deeper ones are not
//! parsed at all.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::Token;

/// Deepest statement pgveil analyses. PostgreSQL itself refuses operator
/// chains of a few thousand terms with its default `max_stack_depth`
/// (54001); ORM and report SQL stays in the low hundreds.
pub const MAX_NESTING: usize = 50_000;

/// Stack one level of the bound may use while sqlparser's tree is parsed,
/// walked by the lineage walker and dropped. Measured on x86-64 by stack
/// painting: at most 4 KB per level for the worst shape (`a+1+1…`,
/// `a||'x'||…` in debug builds; `OR` chains 0.6 KB, casts 2 KB, release
/// builds less), doubled. The memory is reserved, not committed: a
/// statement at the limit reserves 400 MB of address space while it is
/// analysed.
const STACK_PER_LEVEL: usize = 8 * 1024;
/// Stack for the part of the analysis that does not grow with depth.
const STACK_BASE: usize = 1024 * 1024;

/// An over-estimate of the syntax-tree depth of the statements in `tokens`
/// (the deepest one). Iterative: its own cost does not depend on nesting.
pub fn nesting_bound(tokens: &[Token]) -> usize {
    #[derive(Default)]
    struct Group {
        /// Level-opening tokens since the last comma of this group.
        segment: usize,
        longest_segment: usize,
        /// Set operations and joins: they chain across commas.
        chained: usize,
        deepest_child: usize,
    }
    impl Group {
        fn depth(&self) -> usize {
            1 + self.segment.max(self.longest_segment) + self.chained + self.deepest_child
        }
    }
    let mut groups: Vec<Group> = vec![Group::default()];
    let mut deepest = 0;
    for token in tokens {
        match token {
            Token::Whitespace(_) => continue,
            Token::LParen | Token::LBracket | Token::LBrace => {
                if let Some(g) = groups.last_mut() {
                    g.segment += 1;
                }
                groups.push(Group::default());
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if groups.len() > 1 {
                    let closed = groups.pop().map(|g| g.depth()).unwrap_or(0);
                    if let Some(g) = groups.last_mut() {
                        g.deepest_child = g.deepest_child.max(closed);
                    }
                }
            }
            Token::Comma => {
                if let Some(g) = groups.last_mut() {
                    g.longest_segment = g.longest_segment.max(g.segment);
                    g.segment = 0;
                }
            }
            Token::SemiColon if groups.len() == 1 => {
                deepest = deepest.max(groups[0].depth());
                groups[0] = Group::default();
            }
            Token::Word(w)
                if w.quote_style.is_none()
                    && matches!(
                        w.keyword,
                        Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::JOIN
                    ) =>
            {
                if let Some(g) = groups.last_mut() {
                    g.chained += 1;
                    g.segment += 1;
                }
            }
            // Operands never open a level by themselves.
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::Placeholder(_) => {}
            Token::Word(w) if w.quote_style.is_some() || w.keyword == Keyword::NoKeyword => {}
            _ => {
                if let Some(g) = groups.last_mut() {
                    g.segment += 1;
                }
            }
        }
    }
    // Unclosed groups (a syntax error the parser will report) still count.
    while let Some(g) = groups.pop() {
        let depth = g.depth();
        match groups.last_mut() {
            Some(parent) => parent.deepest_child = parent.deepest_child.max(depth),
            None => deepest = deepest.max(depth),
        }
    }
    deepest
}

/// Runs `f` on a stack with room for a syntax tree `bound` levels deep:
/// the caller's own stack when enough of it is left (the common case, no
/// cost), a fresh one otherwise.
pub fn with_stack_for<R>(bound: usize, f: impl FnOnce() -> R) -> R {
    let needed = STACK_BASE.saturating_add(bound.saturating_mul(STACK_PER_LEVEL));
    match stacker::remaining_stack() {
        Some(left) if left > needed => f(),
        _ => stacker::grow(needed, f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    fn bound(sql: &str) -> usize {
        nesting_bound(
            &Tokenizer::new(&PostgreSqlDialect {}, sql)
                .tokenize()
                .unwrap(),
        )
    }

    #[test]
    fn chains_count_and_lists_do_not() {
        assert!(bound(&format!("SELECT 0{}", "+1".repeat(500))) > 500);
        assert!(bound(&format!("SELECT x{} FROM t", "::text".repeat(100))) > 200);
        let list = format!(
            "SELECT a FROM t WHERE id IN ({})",
            vec!["1"; 5000].join(",")
        );
        assert!(bound(&list) < 20, "{}", bound(&list));
        let values = format!(
            "INSERT INTO t VALUES {}",
            vec!["(1, 'a', now())"; 5000].join(",")
        );
        assert!(bound(&values) < 20);
    }

    #[test]
    fn set_operations_chain_across_commas() {
        let sql = vec!["SELECT 1, 2"; 300].join(" UNION ");
        assert!(bound(&sql) >= 300);
    }

    #[test]
    fn groups_add_up_and_statements_do_not() {
        let nested = format!("SELECT {}1{}", "(".repeat(40), ")".repeat(40));
        assert!(bound(&nested) >= 40);
        let two = format!("SELECT {}; SELECT 1", "1+".repeat(50) + "1");
        assert!(bound(&two) >= 50 && bound(&two) < 70, "{}", bound(&two));
        // Unbalanced input still gets a bound.
        assert!(bound(&"(".repeat(100)) >= 100);
        assert!(bound(&")".repeat(100)) >= 1);
    }

    #[test]
    fn deep_trees_within_the_bound_parse_walk_and_drop() {
        // Runs on a small thread stack: the grown stack must carry it.
        let sql = format!("SELECT 0{} FROM t", "+1".repeat(MAX_NESTING / 3));
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let tokens = Tokenizer::new(&PostgreSqlDialect {}, &sql)
                    .tokenize()
                    .unwrap();
                let b = nesting_bound(&tokens);
                assert!(b <= MAX_NESTING);
                with_stack_for(b, || {
                    let parsed = sqlparser::parser::Parser::new(&PostgreSqlDialect {})
                        .with_tokens(tokens)
                        .parse_statements()
                        .unwrap();
                    let text = parsed[0].to_string();
                    let copy = parsed.clone();
                    drop(parsed);
                    drop(copy);
                    text.len()
                })
            })
            .unwrap();
        assert!(handle.join().unwrap() > MAX_NESTING / 3);
    }
}
