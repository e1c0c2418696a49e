module local/ucloud-pause

go 1.22
