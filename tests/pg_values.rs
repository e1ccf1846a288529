//! Typed access to results against a real server, in text and binary format: columns by name,
//! type OIDs, the getters, and their errors for NULL, another type, and out of range.

#[path = "common_backends.rs"]
mod common;
mod pg_support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use asyncloop::error::Error;
use asyncloop::pg::{oid, PgPool, PgResult, PoolOptions, QueryOptions, ValueError};
use asyncloop::reactor::Backend;
use pg_support::{run_until, Cluster};

const SQL: &str = "SELECT 7::int2 AS small, -70000::int4 AS medium, 9000000000::int8 AS big, \
                   1.5::float4 AS f4, -2.25::float8 AS f8, 12345.678::numeric AS num, \
                   true AS yes, false AS no, 'Jörg'::text AS name, 'x'::varchar AS v, \
                   '\\x00ff41'::bytea AS bytes, NULL::int4 AS nothing, 42::oid AS o, \
                   '{\"a\":1}'::json AS j, -0.5::numeric AS neg";

fn check(r: &PgResult, binary: bool) {
    let col = |n: &str| r.column_index(n).unwrap();
    assert_eq!(r.column_index("no_such"), None);
    assert_eq!(r.column_type(col("small")), Some(oid::INT2));
    assert_eq!(r.column_type(col("big")), Some(oid::INT8));
    assert_eq!(r.column_type(col("num")), Some(oid::NUMERIC));
    assert_eq!(r.column_type(99), None);
    assert_eq!(r.is_binary(0), binary);
    assert_eq!(r.get_i64(0, col("small")), Ok(7));
    assert_eq!(r.get_i64(0, col("medium")), Ok(-70000));
    assert_eq!(r.get_i64(0, col("big")), Ok(9_000_000_000));
    assert_eq!(r.get_i64(0, col("o")), Ok(42));
    assert_eq!(r.get_f64(0, col("f4")), Ok(1.5));
    assert_eq!(r.get_f64(0, col("f8")), Ok(-2.25));
    assert!((r.get_f64(0, col("num")).unwrap() - 12345.678).abs() < 1e-9);
    assert_eq!(r.get_f64(0, col("neg")), Ok(-0.5));
    assert_eq!(r.get_f64(0, col("big")), Ok(9e9), "integers widen");
    assert_eq!(r.get_bool(0, col("yes")), Ok(true));
    assert_eq!(r.get_bool(0, col("no")), Ok(false));
    assert_eq!(r.get_text(0, col("name")), Ok("Jörg"));
    assert_eq!(r.get_text(0, col("v")), Ok("x"));
    assert_eq!(r.get_text(0, col("j")), Ok("{\"a\":1}"));
    assert_eq!(
        r.get_bytea(0, col("bytes")).unwrap().as_ref(),
        [0u8, 255, b'A']
    );
    // Errors: NULL, another type, out of range; each with its code.
    let null = r.get_i64(0, col("nothing")).unwrap_err();
    assert_eq!(
        (null.clone(), null.code()),
        (ValueError::Null, Error::PG_NULL)
    );
    assert!(r.is_null(0, col("nothing")));
    assert!(!r.is_null(0, col("small")));
    let wrong = r.get_i64(0, col("name")).unwrap_err();
    assert_eq!(wrong.code(), Error::PG_TYPE);
    assert!(wrong.to_string().contains("OID 25"), "{wrong}");
    assert_eq!(
        r.get_bool(0, col("small")).unwrap_err().code(),
        Error::PG_TYPE
    );
    assert_eq!(
        r.get_bytea(0, col("name")).unwrap_err().code(),
        Error::PG_TYPE
    );
    assert_eq!(r.get_f64(0, col("yes")).unwrap_err().code(), Error::PG_TYPE);
    assert_eq!(r.get_i64(1, 0), Err(ValueError::OutOfRange));
    assert_eq!(r.get_i64(0, 99).unwrap_err().code(), Error::NOT_FOUND);
    if binary {
        // Binary integers are no text.
        assert_eq!(
            r.get_text(0, col("small")).unwrap_err().code(),
            Error::PG_TYPE
        );
    } else {
        assert_eq!(r.get_text(0, col("small")), Ok("7"));
        assert_eq!(r.get_text(0, col("bytes")), Ok("\\x00ff41"));
    }
}

fn typed_values(b: Backend, c: &Cluster) {
    let lp = common::new_loop(b);
    let p = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: c.url.clone(),
            size: 1,
            ..Default::default()
        },
    );
    let checked = Rc::new(RefCell::new(Vec::new()));
    for binary in [false, true] {
        let ch = checked.clone();
        p.query_with(
            SQL,
            &[],
            QueryOptions {
                binary,
                read_only: false,
            },
            move |r| {
                check(&r.unwrap(), binary);
                ch.borrow_mut().push(binary);
            },
        );
    }
    let ch = checked.clone();
    run_until(&lp, Duration::from_secs(10), move || ch.borrow().len() == 2);
    p.close();
}

#[test]
fn typed_values_both_backends() {
    let c = Cluster::start();
    for b in [Backend::Uring, Backend::Epoll] {
        typed_values(b, &c);
    }
}
