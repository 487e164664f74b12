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
    /// `<action>.*.*.*.*.*.<region>.<product>.<service>.*.*`, requests for
    /// `action` addressed to this service in this region, from anywhere
    /// (another region's requests arrive through federation).
    pub fn service_binding(&self, action: &str) -> String {
        self.binding_in(action, &self.region)
    }

    /// The same for requests addressed to this service in *any* region
    /// (`-`): with regions federated, every region's instances that bind it
    /// receive such a request, and the requester takes the first reply.
    pub fn any_region_binding(&self, action: &str) -> String {
        self.binding_in(action, ANY)
    }

    fn binding_in(&self, action: &str, region: &str) -> String {
        format!(
            "{action}.*.*.*.*.*.{region}.{}.{}.*.*",
            self.product, self.service
        )
    }
}

/// Which region's instances a request is for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RegionTarget {
    /// The requester's own region (the default: the nearest).
    #[default]
    Local,
    /// A region by name.
    Named(String),
    /// Every region whose instances bind for it; the first reply wins.
    Any,
}

impl RegionTarget {
    /// Reads an empty string (the local region), `-` (any) or a region
    /// name.
    pub fn parse(s: &str) -> Result<RegionTarget, AddressError> {
        match s {
            "" => Ok(RegionTarget::Local),
            ANY => Ok(RegionTarget::Any),
            name => {
                check(name)?;
                Ok(RegionTarget::Named(name.to_owned()))
            }
        }
    }

    /// The region element of the address a request goes to, for a
    /// requester in `mine`.
    pub fn region<'a>(&'a self, mine: &'a str) -> &'a str {
        match self {
            RegionTarget::Local => mine,
            RegionTarget::Named(r) => r,
            RegionTarget::Any => ANY,
        }
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
            "route.*.*.*.*.*.us-west-2.search.route.*.*"
        );
        let req = "route.us-west-2.search.resolve.i-123.12.us-west-2.search.route.-.-";
        assert!(topic_match(&me.service_binding("route"), req));
        assert!(!topic_match(&me.any_region_binding("route"), req));
        assert!(!topic_match(&me.unique_binding(), req));
        // From another region, to this one: bound on the destination.
        let from_east = "route.eu-east-1.search.resolve.i-9.3.us-west-2.search.route.-.-";
        assert!(topic_match(&me.service_binding("route"), from_east));
        // To another region, or another product: not for this instance.
        let to_east = "route.us-west-2.search.resolve.i-123.12.eu-east-1.search.route.-.-";
        assert!(!topic_match(&me.service_binding("route"), to_east));
        let other_product = "route.us-west-2.mail.resolve.i-1.1.us-west-2.mail.route.-.-";
        assert!(!topic_match(&me.service_binding("route"), other_product));
        // To any region.
        let anywhere = "route.eu-east-1.search.resolve.i-9.3.-.search.route.-.-";
        assert!(topic_match(&me.any_region_binding("route"), anywhere));
        assert!(!topic_match(&me.service_binding("route"), anywhere));
        let reply = RoutingKey::parse(req).unwrap().reply(&me).to_string();
        let resolver = Address::parse("us-west-2.search.resolve.i-123.12").unwrap();
        assert!(topic_match(&resolver.unique_binding(), &reply));
    }

    #[test]
    fn region_targets() {
        assert_eq!(RegionTarget::parse("").unwrap(), RegionTarget::Local);
        assert_eq!(RegionTarget::parse("").unwrap().region("east"), "east");
        assert_eq!(RegionTarget::parse("-").unwrap().region("east"), "-");
        assert_eq!(RegionTarget::parse("west").unwrap().region("east"), "west");
        assert!(RegionTarget::parse("a.b").is_err());
        assert!(RegionTarget::parse("#").is_err());
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
