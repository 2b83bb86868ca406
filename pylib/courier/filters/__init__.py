"""courier.filters - mtapy's own versions of courier-pythonfilter filters that keep state.

DESCRIPTION  Upstream's ratelimit and ratelimitauth count messages in a module-level dict,
             which under a pool of workers would be one count per worker. These count in the
             pool's shared state (mtapy.state) instead, with upstream's settings
             ([ratelimit.py] / [ratelimitauth.py] in pythonfilter-modules.conf) and replies:
               ratelimit      421 once a client IP (or its /24, /48) sent too many messages
               ratelimitauth  421 once an SMTP AUTH user sent too many messages
             A pythonfilter.conf line "ratelimit" or "pythonfilter.ratelimit" runs these,
             even when upstream's package is installed (mtapy.filter_chain).
SEE ALSO     courier/ttldb.py (the other stateful filters' database), mtapy/state.py
"""
