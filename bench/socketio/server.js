// Socket.IO room broadcast server for the load harness.
//
//   node server.js [PORT]   # PORT from argv[2], else $PORT, else 7413
//
// Clients speak engine.io v4 / socket.io v5 over a plain WebSocket at
// ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket.
//   sub        -> join room "bench"; ack if asked for, else emit "subok"
//   pub(data)  -> io.to("bench").emit("msg", data); ack if asked for
'use strict';

const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || process.env.PORT || 7413);

const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ['websocket'],
  perMessageDeflate: false,
  maxHttpBufferSize: 1e6,
  pingInterval: 25000,
  serveClient: false,
});

// The ack callback, when the client asked for one, is the last argument.
function takeAck(args) {
  return typeof args[args.length - 1] === 'function' ? args.pop() : null;
}

io.on('connection', (socket) => {
  socket.on('sub', (...args) => {
    const ack = takeAck(args);
    socket.join('bench');
    if (ack) ack();
    else socket.emit('subok');
  });

  socket.on('pub', (...args) => {
    const ack = takeAck(args);
    io.to('bench').emit('msg', args[0]);
    if (ack) ack();
  });
});

httpServer.listen(port, '127.0.0.1', () => {
  console.log(`listening ${port}`);
});
