module raytrader.local/netcheck

go 1.26.0
