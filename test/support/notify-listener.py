# A test-owned NOTIFY_SOCKET: binds a unix datagram socket and prints every
# message it receives on one line (newlines shown as "|"). Node cannot bind one.
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
while True:
    print(s.recv(65536).decode().replace("\n", "|"), flush=True)
