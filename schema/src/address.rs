//! Postoffice addressing: every service instance in the mesh has an address
//! `region.product.service.instance.pid`, and every internal message carries
//! the routing key `<action>.<from address>.<to address>` (11 elements).
//! `-` in an address means "any": a request to `us-west-2.postmesh.history.-.-`
//! is for any history service in that region.

use std::fmt;

/// The "any" marker inside an address.
pub const ANY: &str = "-";

/// Why an address or routing key did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    #[error("an address has 5 elements (region.product.service.instance.pid), got {0}")]
    Elements(usize),
    #[error("a routing key has 11 elements (action + two addresses), got {0}")]
    KeyElements(usize),
    #[error("element '{0}' is empty or contains '.', '*' or '#'")]
    BadElement(String),
}

fn check(elem: &str) -> Result<(), AddressError> {
    if elem.is_empty() || elem.contains(['.', '*', '#']) || elem.chars().any(char::is_control) {
        return Err(AddressError::BadElement(elem.to_owned()));
    }
    Ok(())
}

/// `region.product.service.instance.pid`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub region: String,
    pub product: String,
    pub service: String,
    pub instance: String,
    pub pid: String,
}

impl Address {
    /// Builds and validates an address.
    pub fn new(
        region: &str,
        product: &str,
        service: &str,
        instance: &str,
        pid: &str,
    ) -> Result<Address, AddressError> {
        for e in [region, product, service, instance, pid] {
            check(e)?;
        }
        Ok(Address {
            region: region.into(),
            product: product.into(),
            service: service.into(),
            instance: instance.into(),
            pid: pid.into(),
        })
    }

    /// Any instance of `service` in `region`.
    pub fn any_of(region: &str, product: &str, service: &str) -> Result<Address, AddressError> {
        Address::new(region, product, service, ANY, ANY)
    }

    /// Parses `region.product.service.instance.pid`.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let parts: Vec<&str> = s.split('.').collect();
        match parts.as_slice() {
            [r, p, s, i, pid] => Address::new(r, p, s, i, pid),
            _ => Err(AddressError::Elements(parts.len())),
        }
    }

    /// The binding a service instance makes to receive what is addressed to
    /// it alone, e.g. RPC replies: `*.*.*.*.*.*.<my address>`.
    pub fn unique_binding(&self) -> String {
        format!("*.*.*.*.*.*.{self}")
    }

    /// The binding a service instance makes to share its service's work:
    /// `<action>.<region>.*.*.*.*.*.*.<service>.*.*`, requests for `action`
    /// from this region to any instance of this service.
    pub fn service_binding(&self, action: &str) -> String {
        format!("{action}.{}.*.*.*.*.*.*.{}.*.*", self.region, self.service)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}.{}",
            self.region, self.product, self.service, self.instance, self.pid
        )
    }
}

/// `<action>.<from>.<to>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutingKey {
    pub action: String,
    pub from: Address,
    pub to: Address,
}

impl RoutingKey {
    /// Builds a routing key, validating the action.
    pub fn new(action: &str, from: Address, to: Address) -> Result<RoutingKey, AddressError> {
        check(action)?;
        Ok(RoutingKey {
            action: action.into(),
            from,
            to,
        })
    }

    /// Parses an 11-element routing key.
    pub fn parse(s: &str) -> Result<RoutingKey, AddressError> {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 11 {
            return Err(AddressError::KeyElements(parts.len()));
        }
        let from = Address::new(parts[1], parts[2], parts[3], parts[4], parts[5])?;
        let to = Address::new(parts[6], parts[7], parts[8], parts[9], parts[10])?;
        RoutingKey::new(parts[0], from, to)
    }

    /// The reply's routing key: same action, from and to swapped.
    pub fn reply(&self, replier: &Address) -> RoutingKey {
        RoutingKey {
            action: self.action.clone(),
            from: replier.clone(),
            to: self.from.clone(),
        }
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.action, self.from, self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::topic_match;

    #[test]
    fn design_example_round_trips() {
        let s = "route.us-west-2.search.resolve.i-123.12.us-west-2.search.route.-.-";
        let k = RoutingKey::parse(s).unwrap();
        assert_eq!(k.action, "route");
        assert_eq!(k.from.service, "resolve");
        assert_eq!(k.to.instance, "-");
        assert_eq!(k.to_string(), s);
    }

    #[test]
    fn standard_bindings() {
        let me = Address::parse("us-west-2.search.route.i-123.12").unwrap();
        assert_eq!(
            me.unique_binding(),
            "*.*.*.*.*.*.us-west-2.search.route.i-123.12"
        );
        assert_eq!(
            me.service_binding("route"),
            "route.us-west-2.*.*.*.*.*.*.route.*.*"
        );
        let req = "route.us-west-2.search.resolve.i-123.12.us-west-2.search.route.-.-";
        assert!(topic_match(&me.service_binding("route"), req));
        assert!(!topic_match(&me.unique_binding(), req));
        let reply = RoutingKey::parse(req).unwrap().reply(&me).to_string();
        let resolver = Address::parse("us-west-2.search.resolve.i-123.12").unwrap();
        assert!(topic_match(&resolver.unique_binding(), &reply));
    }

    #[test]
    fn errors() {
        assert_eq!(
            Address::parse("a.b.c").unwrap_err(),
            AddressError::Elements(3)
        );
        assert_eq!(
            RoutingKey::parse("a.b").unwrap_err(),
            AddressError::KeyElements(2)
        );
        assert!(matches!(
            Address::parse("a.b.c.*.e"),
            Err(AddressError::BadElement(_))
        ));
        assert!(matches!(
            Address::parse("a..c.d.e"),
            Err(AddressError::BadElement(_))
        ));
    }
}
