#!/usr/bin/env bash
# Placeholder: replaced by the Pyomo reference work (issue 3). Builds nothing yet.
echo "Ipopt build not implemented yet"
exit 0
