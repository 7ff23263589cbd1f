//! Procedural macros of charmrs. `#[chare]` on a chare type's `impl` block makes every
//! method an entry method: it registers each one (deterministic, link-time table) and
//! generates the typed proxy `<Type>Proxy` with one method per entry method, so that a
//! call to a method that does not exist, or with arguments of the wrong types, is a
//! compile error.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{parse_macro_input, FnArg, ImplItem, ImplItemFn, ItemImpl, Pat, ReturnType, Type};

/// Makes the methods of an `impl` block entry methods of a chare type.
///
/// - `fn new([ctx: &Ctx<Self>,] args...) -> Self` is the constructor (required).
/// - `fn m(&mut self | &self, [ctx: &Ctx<Self>,] args...) [-> R]` is a synchronous entry
///   method.
/// - `async fn m(this: Handle<Self>, args...) [-> R]` is an async entry method: it
///   borrows the chare through `this.with(..)`, never across an `.await`.
/// - `#[when(condition)]` on a method delays each message until `condition` holds; the
///   condition sees `self` and the method's arguments by reference.
///
/// Arguments and return values must implement `charmrs::Payload`. The proxy is `pub`
/// unless a visibility is given, `#[chare(pub(crate))]`: it must not be more visible than
/// the chare type.
///
/// `#[chare(migratable)]` (or `#[chare(pub(crate), migratable)]`) makes the elements of
/// arrays of this type migratable: the type must implement serde's `Serialize` and
/// `Deserialize` (its state travels serialized). An entry method named `migrated`, if
/// there is one, runs after each move; one named `resume_from_sync` runs after each
/// load-balancing step (`Ctx::at_sync`).
#[proc_macro_attribute]
pub fn chare(attr: TokenStream, item: TokenStream) -> TokenStream {
    let parser = |input: syn::parse::ParseStream| -> syn::Result<(syn::Visibility, bool)> {
        let mut vis: syn::Visibility = input.parse()?;
        if matches!(vis, syn::Visibility::Inherited) {
            vis = syn::parse_quote!(pub);
        } else if !input.is_empty() {
            input.parse::<syn::Token![,]>()?;
        }
        let mut migratable = false;
        if !input.is_empty() {
            let id: syn::Ident = input.parse()?;
            if id != "migratable" {
                return Err(syn::Error::new(id.span(), "expected `migratable`"));
            }
            migratable = true;
        }
        if !input.is_empty() {
            return Err(input.error("unexpected tokens"));
        }
        Ok((vis, migratable))
    };
    let (vis, migratable) = match syn::parse::Parser::parse(parser, attr) {
        Ok(v) => v,
        Err(e) => {
            return syn::Error::new(
                e.span(),
                format!(
                    "#[chare] takes an optional visibility for the proxy and `migratable`, e.g. \
                     #[chare(pub(crate), migratable)]: {e}"
                ),
            )
            .to_compile_error()
            .into()
        }
    };
    let item = parse_macro_input!(item as ItemImpl);
    match expand(item, vis, migratable) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

enum Kind {
    Ctor { ctx: bool },
    Mut { ctx: bool },
    Ref { ctx: bool },
    Async,
}

struct Method {
    name: syn::Ident,
    kind: Kind,
    args: Vec<(syn::Ident, Type)>,
    ret: Type,
    when: Option<syn::Expr>,
}

fn is_named(ty: &Type, name: &str) -> bool {
    let ty = match ty {
        Type::Reference(r) => &*r.elem,
        t => t,
    };
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == name),
        _ => false,
    }
}

fn parse_method(f: &mut ImplItemFn) -> syn::Result<Method> {
    let mut when = None;
    let mut keep = Vec::new();
    for a in f.attrs.drain(..) {
        if a.path().is_ident("when") {
            when = Some(a.parse_args::<syn::Expr>()?);
        } else {
            keep.push(a);
        }
    }
    f.attrs = keep;
    let sig = &f.sig;
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(sig.generics.span(), "entry methods cannot be generic"));
    }
    let mut inputs = sig.inputs.iter().peekable();
    let receiver = match inputs.peek() {
        Some(FnArg::Receiver(r)) => {
            let m = r.mutability.is_some();
            if r.reference.is_none() {
                return Err(syn::Error::new(
                    r.span(),
                    "entry methods take `&self` or `&mut self`, not `self`",
                ));
            }
            inputs.next();
            Some(m)
        }
        _ => None,
    };
    let is_async = sig.asyncness.is_some();
    let is_ctor = sig.ident == "new";
    let mut ctx = false;
    if let Some(FnArg::Typed(t)) = inputs.peek() {
        let first = if is_async { "Handle" } else { "Ctx" };
        if is_named(&t.ty, first) {
            inputs.next();
            ctx = true;
        }
    }
    let kind = match (is_ctor, is_async, receiver) {
        (true, false, None) => Kind::Ctor { ctx },
        (true, _, _) => {
            return Err(syn::Error::new(sig.span(), "the constructor is `fn new([ctx: &Ctx<Self>,] args...) -> Self`"))
        }
        (false, true, None) if ctx => Kind::Async,
        (false, true, _) => {
            return Err(syn::Error::new(
                sig.span(),
                "async entry methods take `this: Handle<Self>` first (no `self`: the chare must not stay borrowed across an await)",
            ))
        }
        (false, false, Some(true)) => Kind::Mut { ctx },
        (false, false, Some(false)) => Kind::Ref { ctx },
        (false, false, None) => {
            return Err(syn::Error::new(sig.span(), "an entry method takes `&self` or `&mut self` (or is `async` with a `Handle<Self>`)"))
        }
    };
    let mut args = Vec::new();
    for a in inputs {
        let FnArg::Typed(t) = a else { unreachable!("receiver comes first") };
        let name = match &*t.pat {
            Pat::Ident(i) => i.ident.clone(),
            _ => format_ident!("__arg{}", args.len()),
        };
        args.push((name, (*t.ty).clone()));
    }
    let ret = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, t) => (**t).clone(),
    };
    Ok(Method { name: sig.ident.clone(), kind, args, ret, when })
}

fn expand(mut item: ItemImpl, vis: syn::Visibility, migratable: bool) -> syn::Result<TokenStream2> {
    if item.trait_.is_some() {
        return Err(syn::Error::new(item.span(), "#[chare] goes on the inherent `impl Type { .. }` block"));
    }
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(item.generics.span(), "chare types cannot be generic"));
    }
    let self_ty = (*item.self_ty).clone();
    let Type::Path(tp) = &self_ty else {
        return Err(syn::Error::new(self_ty.span(), "expected a type name"));
    };
    let ty_ident = tp.path.segments.last().expect("a path").ident.clone();
    let proxy = format_ident!("{}Proxy", ty_ident);
    let mut methods = Vec::new();
    for it in item.items.iter_mut() {
        if let ImplItem::Fn(f) = it {
            methods.push(parse_method(f)?);
        }
    }
    let Some(ctor) = methods.iter().find(|m| matches!(m.kind, Kind::Ctor { .. })) else {
        return Err(syn::Error::new(
            item.span(),
            "a chare needs a constructor `fn new([ctx: &Ctx<Self>,] args...) -> Self`",
        ));
    };
    let ctor_tys: Vec<&Type> = ctor.args.iter().map(|a| &a.1).collect();
    let ctor_static = format_ident!("__CHARMRS_EP_{}_new", ty_ident);
    let p = quote!(::charmrs::__private);
    let ty_name = ty_ident.to_string();

    let hook = |name: &str| -> TokenStream2 {
        let found = methods.iter().any(|m| m.name == name && !matches!(m.kind, Kind::Ctor { .. }));
        if found {
            let st = format_ident!("__CHARMRS_EP_{}_{}", ty_ident, name);
            quote!(::core::option::Option::Some(&#st))
        } else {
            quote!(::core::option::Option::None)
        }
    };
    let (migrated_hook, resume_hook) = (hook("migrated"), hook("resume_from_sync"));
    let mut statics = Vec::new();
    let mut proxy_methods = Vec::new();
    let mut when_fns = Vec::new();
    for m in &methods {
        let name = &m.name;
        let mname = name.to_string();
        let st = format_ident!("__CHARMRS_EP_{}_{}", ty_ident, name);
        let tys: Vec<&Type> = m.args.iter().map(|a| &a.1).collect();
        let names: Vec<syn::Ident> = (0..m.args.len()).map(|i| format_ident!("__a{}", i)).collect();
        let ret = &m.ret;
        let args_ty = quote!((#(#tys,)*));
        let invoke = match m.kind {
            Kind::Ctor { ctx } => {
                let c = if ctx { quote!(__ctx,) } else { quote!() };
                quote!(#p::invoke_ctor::<#self_ty>(inv, |__ctx, (#(#names,)*)| <#self_ty>::#name(#c #(#names),*)))
            }
            Kind::Mut { ctx } => {
                let c = if ctx { quote!(__ctx,) } else { quote!() };
                quote!(#p::invoke_mut::<#self_ty, #args_ty, #ret>(inv, |__this, __ctx, (#(#names,)*)| <#self_ty>::#name(__this, #c #(#names),*)))
            }
            Kind::Ref { ctx } => {
                let c = if ctx { quote!(__ctx,) } else { quote!() };
                quote!(#p::invoke_ref::<#self_ty, #args_ty, #ret>(inv, |__this, __ctx, (#(#names,)*)| <#self_ty>::#name(__this, #c #(#names),*)))
            }
            Kind::Async => {
                quote!(#p::invoke_async::<#self_ty, #args_ty, #ret, _>(inv, |__h, (#(#names,)*)| <#self_ty>::#name(__h, #(#names),*)))
            }
        };
        let when = match &m.when {
            None => quote!(::core::option::Option::None),
            Some(expr) => {
                let wname = format_ident!("__charmrs_when_{}", name);
                let params: Vec<TokenStream2> =
                    m.args.iter().map(|(n, t)| quote_spanned!(t.span()=> #n: &#t)).collect();
                when_fns.push(quote! {
                    #[doc(hidden)]
                    #[allow(unused_variables, clippy::ptr_arg)]
                    fn #wname(&self, #(#params),*) -> bool { #expr }
                });
                quote!(::core::option::Option::Some({
                    fn __w(e: &dyn ::core::any::Any, a: &dyn ::core::any::Any) -> bool {
                        #p::when_check::<#self_ty, #args_ty>(e, a, |__s, (#(#names,)*)| __s.#wname(#(#names),*))
                    }
                    __w
                }))
            }
        };
        let migrate = if migratable && matches!(m.kind, Kind::Ctor { .. }) {
            quote!(.with_migrate(#p::MigrateFns::of::<#self_ty>(#migrated_hook, #resume_hook)))
        } else {
            quote!()
        };
        statics.push(quote! {
            #[#p::linkme::distributed_slice(#p::ENTRIES)]
            #[linkme(crate = #p::linkme)]
            #[allow(non_upper_case_globals)]
            #[doc(hidden)]
            static #st: #p::EntryDesc = #p::EntryDesc::new(
                ::core::concat!(::core::module_path!(), "::", #ty_name, "::", #mname),
                ::core::concat!(::core::module_path!(), "::", #ty_name),
                #mname,
                {
                    fn __invoke(inv: #p::Invoke<'_>) { #invoke }
                    __invoke
                },
                #when,
                #p::ArgCodec::of::<#args_ty>(),
            )#migrate;
        });
        if !matches!(m.kind, Kind::Ctor { .. }) {
            let params: Vec<TokenStream2> = m.args.iter().map(|(n, t)| quote!(#n: #t)).collect();
            let arg_names: Vec<&syn::Ident> = m.args.iter().map(|a| &a.0).collect();
            let doc = format!("Calls entry method [`{ty_name}::{mname}`] (one element) or broadcasts it (whole collection).");
            proxy_methods.push(quote! {
                #[doc = #doc]
                #[allow(clippy::too_many_arguments)]
                #vis fn #name(&self, #(#params),*) -> ::charmrs::Call<#ret> {
                    #p::call::<#args_ty, #ret>(&self.0, &#st, (#(#arg_names,)*))
                }
            });
        }
    }
    let proxy_doc = format!("Proxy to [`{ty_name}`] chares: a whole collection or one element.");
    Ok(quote! {
        #item

        impl #self_ty {
            #(#when_fns)*
        }

        #[doc = #proxy_doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #vis struct #proxy(#p::RawProxy);

        impl #p::serde::Serialize for #proxy {
            fn serialize<S: #p::serde::Serializer>(&self, s: S) -> ::core::result::Result<S::Ok, S::Error> {
                #p::serde::Serialize::serialize(&self.0, s)
            }
        }

        impl<'de> #p::serde::Deserialize<'de> for #proxy {
            fn deserialize<D: #p::serde::Deserializer<'de>>(d: D) -> ::core::result::Result<Self, D::Error> {
                <#p::RawProxy as #p::serde::Deserialize<'de>>::deserialize(d).map(#proxy)
            }
        }

        impl ::charmrs::Proxy for #proxy {
            type Chare = #self_ty;
            fn __from_raw(raw: #p::RawProxy) -> Self { #proxy(raw) }
            fn __raw(&self) -> &#p::RawProxy { &self.0 }
        }

        impl #proxy {
            #(#proxy_methods)*
        }

        impl ::charmrs::Chare for #self_ty {
            type Proxy = #proxy;
            type Args = (#(#ctor_tys,)*);
            fn __ctor() -> &'static #p::EntryDesc { &#ctor_static }
        }

        #(#statics)*
    })
}
