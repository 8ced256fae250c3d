// The lab's rep.js for the Docker path: the broker comes from NATS_URL (default nats://iot-msg:4222).
var servers = [process.env.NATS_URL || 'nats://iot-msg:4222'];
var topic = 'trash-level';
var nats = require('nats').connect({'servers': servers});

nats.subscribe(topic, function(msg) {
    console.log('Received report: ' + msg);
});
