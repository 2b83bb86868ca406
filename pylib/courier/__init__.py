"""courier - courier-pythonfilter's developer API, for filters run by mtapy.

DESCRIPTION  Filters written for courier-pythonfilter import courier.control, courier.config
             and courier.xfilter; this package provides them with the documented behaviour
             (its developer documentation is the contract), so such filters run unchanged in
             an mtapy pool. Implemented so far: courier.control, courier.config and
             courier.xfilter (the filter program and the pool's filter chain come next).
SEE ALSO     README.md "Courier"
"""
