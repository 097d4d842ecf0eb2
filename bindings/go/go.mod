module flowomnium

go 1.19
