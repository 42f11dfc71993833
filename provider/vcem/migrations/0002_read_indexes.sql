-- Indexes for the reads that serve a 16,000-bay inventory (issue 8): without them a
-- failover's spare search (repository.bays_of_group) scanned every bay, and each page of an
-- enumeration (repository.iter_bays) sorted its enclosures' bays by bay_order.

-- domains_of_group, bays_of_group: group -> domains -> enclosures -> bays, each a search.
CREATE INDEX vcem_domains_group ON vcem_domains (group_name, name);
CREATE INDEX vcem_enclosures_domain ON vcem_enclosures (domain, position);

-- iter_bays pages in (enclosure, bay_order) order and bays_of_group sorts by bay_order.
CREATE INDEX vcem_bays_order ON vcem_bays (enclosure, bay_order);
