//! How `#[channel]` and `#[derive(Encode)]` find a type's [`TypeFn`]
//! without requiring anything of the type: autoref specialization on
//! [`Probe`]. The macros write, for a concrete type `T`,
//!
//! ```text
//! (&&&Probe::<T>::NEW).type_fn()
//! ```
//!
//! and method resolution picks the first of: `T: TypeScript`
//! ([`ViaTypeScript`]), `T: ts_rs::TS` with the `typescript` feature
//! ([`ViaTsRs`]), anything ([`ViaUnknown`], `unknown`). It works because
//! the macros' types are concrete where they are written; a type naming a
//! generic parameter is `unknown`.
//!
//! The steps before it unwrap what a handler's types wrap: the payload of a
//! `Valid<T, _>` argument is `T`'s ([`PayloadOf`]), the response of a
//! return type is its [`ReplyTypes`] ([`RepliesOf`]) and of a join its
//! [`JoinTypes`] ([`JoinOf`]).

use std::marker::PhantomData;

use super::{invalid_payload, never, unknown_type, validation_errors, JoinTypes, ReplyTypes, TypeFn, TypeScript};
use crate::changeset::Valid;
use crate::protocol::Payload;

/// Stands for the type `T` in method resolution.
pub struct Probe<T: ?Sized>(PhantomData<*const T>);

impl<T: ?Sized> Probe<T> {
    /// The probe.
    pub const NEW: Self = Probe(PhantomData);
}

/// The first choice: a type with a [`TypeScript`] impl.
pub trait ViaTypeScript {
    /// The type's [`TypeFn`].
    fn type_fn(&self) -> TypeFn;
}

impl<T: TypeScript + ?Sized> ViaTypeScript for &&Probe<T> {
    fn type_fn(&self) -> TypeFn {
        T::typescript
    }
}

/// The second choice: a type with a `ts_rs::TS` impl (serde renames
/// respected). Without the `typescript` feature nothing implements it.
pub trait ViaTsRs {
    /// The type's [`TypeFn`].
    fn type_fn(&self) -> TypeFn;
}

#[cfg(feature = "typescript")]
impl<T: ts_rs::TS + 'static + ?Sized> ViaTsRs for &Probe<T> {
    fn type_fn(&self) -> TypeFn {
        ts_rs_type::<T>
    }
}

/// The last choice: `unknown`, recorded with the type's name.
pub trait ViaUnknown {
    /// `unknown`'s [`TypeFn`].
    fn type_fn(&self) -> TypeFn;
}

impl<T: ?Sized> ViaUnknown for Probe<T> {
    fn type_fn(&self) -> TypeFn {
        unknown_type::<T>
    }
}

/// A handler's payload argument: the type the client sends and what a
/// payload that does not fit is answered with. `(&&Probe::<P>::NEW).payload()`.
pub trait PayloadOf {
    /// What the payload's TypeScript is read from.
    type Inner: ?Sized;
    /// The probe of what the client sends, and the rejection's [`TypeFn`].
    fn payload(&self) -> (Probe<Self::Inner>, TypeFn);
}

/// `Valid<T, _>`: `T`, rejected with its validation errors.
impl<T, M> PayloadOf for &Probe<Valid<T, M>> {
    type Inner = T;
    fn payload(&self) -> (Probe<T>, TypeFn) {
        (Probe::NEW, validation_errors)
    }
}

/// `Payload` takes anything and never rejects.
impl PayloadOf for &Probe<Payload> {
    type Inner = Payload;
    fn payload(&self) -> (Probe<Payload>, TypeFn) {
        (Probe::NEW, never)
    }
}

/// Any other payload type: itself, rejected as an invalid payload.
pub trait PayloadOfOther {
    /// What the payload's TypeScript is read from.
    type Inner: ?Sized;
    /// The probe of what the client sends, and the rejection's [`TypeFn`].
    fn payload(&self) -> (Probe<Self::Inner>, TypeFn);
}

impl<T: ?Sized> PayloadOfOther for Probe<T> {
    type Inner = T;
    fn payload(&self) -> (Probe<T>, TypeFn) {
        (Probe::NEW, invalid_payload)
    }
}

/// A handler's return type with [`ReplyTypes`]: the probes of its ok and
/// error responses. `(&&Probe::<R>::NEW).replies()`.
pub trait RepliesOf {
    /// The ok response.
    type Ok: ?Sized;
    /// The error response.
    type Error: ?Sized;
    /// The probes of both.
    fn replies(&self) -> (Probe<Self::Ok>, Probe<Self::Error>);
}

impl<R: ReplyTypes + ?Sized> RepliesOf for &Probe<R> {
    type Ok = R::Ok;
    type Error = R::Error;
    fn replies(&self) -> (Probe<R::Ok>, Probe<R::Error>) {
        (Probe::NEW, Probe::NEW)
    }
}

/// Any other return type: untyped responses (`unknown`).
pub trait RepliesOfOther {
    /// The probes of both responses.
    fn replies(&self) -> (Probe<super::Untyped>, Probe<super::Untyped>);
}

impl<R: ?Sized> RepliesOfOther for Probe<R> {
    fn replies(&self) -> (Probe<super::Untyped>, Probe<super::Untyped>) {
        (Probe::NEW, Probe::NEW)
    }
}

/// A `join`'s return type with [`JoinTypes`]: the probe of its response.
/// `(&&Probe::<R>::NEW).join_response()`.
pub trait JoinOf {
    /// The response.
    type Response: ?Sized;
    /// Its probe.
    fn join_response(&self) -> Probe<Self::Response>;
}

impl<R: JoinTypes + ?Sized> JoinOf for &Probe<R> {
    type Response = R::Response;
    fn join_response(&self) -> Probe<R::Response> {
        Probe::NEW
    }
}

/// Any other return type: an untyped response.
pub trait JoinOfOther {
    /// Its probe.
    fn join_response(&self) -> Probe<super::Untyped>;
}

impl<R: ?Sized> JoinOfOther for Probe<R> {
    fn join_response(&self) -> Probe<super::Untyped> {
        Probe::NEW
    }
}

/// Declares a `ts_rs::TS` type and the declared types it depends on, and
/// returns how to refer to it. `u64` and friends are `number`, as
/// `JSON.parse` reads them.
#[cfg(feature = "typescript")]
pub fn ts_rs_type<T: ts_rs::TS + 'static + ?Sized>(declarations: &mut super::Declarations) -> String {
    let config = ts_rs::Config::new().with_large_int("number");
    declare_ts_rs::<T>(declarations, &config);
    T::name(&config)
}

#[cfg(feature = "typescript")]
fn declare_ts_rs<T: ts_rs::TS + 'static + ?Sized>(declarations: &mut super::Declarations, config: &ts_rs::Config) {
    struct Visit<'a> {
        declarations: &'a mut super::Declarations,
        config: &'a ts_rs::Config,
    }
    impl ts_rs::TypeVisitor for Visit<'_> {
        fn visit<D: ts_rs::TS + 'static + ?Sized>(&mut self) {
            declare_ts_rs::<D>(self.declarations, self.config);
        }
    }
    if T::output_path().is_none() {
        // Not declared itself (a primitive, `Vec<X>`, `Option<X>`): what it
        // wraps may be. (Its generics, not its dependencies: those of
        // `Vec<X>` are `X`'s, which may be `Vec<X>` again.)
        T::visit_generics(&mut Visit { declarations, config });
        return;
    }
    let name = T::ident(config);
    declarations.declare(&name, std::any::type_name::<T::WithoutGenerics>(), |declarations| {
        let mut visit = Visit { declarations, config };
        T::visit_dependencies(&mut visit);
        let docs = T::docs().map(|docs| format!("{}\n", docs.trim_end())).unwrap_or_default();
        format!("{docs}export {}", T::decl(config))
    });
}
