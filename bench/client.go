package main

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"storesync/api"
	"storesync/api/storev1"
)

func dial(addr string) (storev1.StoreClient, func(), error) {
	conn, err := grpc.NewClient(addr, append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return nil, nil, err
	}
	return storev1.NewStoreClient(conn), func() { conn.Close() }, nil
}
