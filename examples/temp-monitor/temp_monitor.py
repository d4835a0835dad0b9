"""TempMonitor: a pinned Greengrass (v1) Lambda function that watches a temperature sensor on a
Modbus RTU bus, shows each reading on a display and texts an operator when it gets too hot.

At import it starts a thread that asks the Modbus-RTU Protocol Adapter connector for the
sensor's holding register every POLL_INTERVAL seconds (on `modbus/adapter/request`). The
connector's answers come back to the handler (on `modbus/adapter/response`). The handler
publishes each reading on `hall/temperature`, and when the temperature rises above
TEMPERATURE_LIMIT it asks the Twilio Notifications connector for one text message (on
`twilio/txt`). It texts again only after the temperature has come back to the limit or below
and risen above it once more.

Environment variables (the function's configuration in the group):

    TEMPERATURE_LIMIT    degrees C; above it is too hot (required)
    MODBUS_DEVICE        the sensor's unit id (default 1)
    MODBUS_ADDRESS       its holding register (default 0)
    TEMPERATURE_DIVISOR  the register holds degrees C times this (default 10: 215 = 21.5 C)
    POLL_INTERVAL        seconds between reads (default 5)
    ALERT_NAME           who gets the text (default "Operator")
    ALERT_PHONE_NUMBER   their E.164 number (required)
    ALERT_FROM_NUMBER    the sender; empty for the connector's DefaultFromPhoneNumber
"""

import json
import logging
import os
import threading

import greengrasssdk

MODBUS_REQUEST = "modbus/adapter/request"
MODBUS_RESPONSE = "modbus/adapter/response"
TWILIO_TXT = "twilio/txt"
READINGS = "hall/temperature"
POLL_ID = "temp-monitor-poll"

LIMIT = float(os.environ["TEMPERATURE_LIMIT"])
DEVICE = int(os.environ.get("MODBUS_DEVICE", "1"))
ADDRESS = int(os.environ.get("MODBUS_ADDRESS", "0"))
DIVISOR = float(os.environ.get("TEMPERATURE_DIVISOR", "10"))
POLL_INTERVAL = float(os.environ.get("POLL_INTERVAL", "5"))
ALERT_NAME = os.environ.get("ALERT_NAME", "Operator")
ALERT_PHONE_NUMBER = os.environ["ALERT_PHONE_NUMBER"]
ALERT_FROM_NUMBER = os.environ.get("ALERT_FROM_NUMBER", "")

log = logging.getLogger()
log.setLevel(logging.INFO)
iot = greengrasssdk.client("iot-data")

# The handler's state. A pinned function has one long-lived process, and its handler is called
# for one message at a time, so these need no lock.
above_limit = False
alerts_sent = 0


def poll_forever():
    """Ask for the sensor's register, every POLL_INTERVAL seconds, for as long as we live."""
    request = json.dumps({
        "request": {"operation": "ReadHoldingRegistersRequest", "device": DEVICE,
                    "address": ADDRESS, "count": 1},
        "id": POLL_ID})
    stop = threading.Event()
    while not stop.wait(POLL_INTERVAL):
        try:
            iot.publish(topic=MODBUS_REQUEST, payload=request)
        except Exception as e:  # keep polling: the next try may get through
            log.error("could not ask for the temperature: %s", e)


def alert(temperature):
    global alerts_sent
    alerts_sent += 1
    request = {"recipient": {
        "name": ALERT_NAME, "phone_number": ALERT_PHONE_NUMBER,
        "message": "Temperature alert: %.1f C in the hall, above the limit of %g C"
                   % (temperature, LIMIT)}}
    if ALERT_FROM_NUMBER:
        request["from_number"] = ALERT_FROM_NUMBER
    iot.publish(topic=TWILIO_TXT, payload=json.dumps(
        {"request": request, "id": "temp-alert-%d" % alerts_sent}))
    log.info("%.1f C is above %g C: texted %s (alert %d)", temperature, LIMIT, ALERT_NAME,
             alerts_sent)


def function_handler(event, context):
    global above_limit
    topic = context.client_context.custom["subject"]
    if topic != MODBUS_RESPONSE or event.get("id") != POLL_ID:
        return  # another client's answer on the shared topic
    response = event.get("response") or {}
    if response.get("status") != "success":
        log.warning("no reading from the sensor: %s", response.get("error_message"))
        return
    temperature = response["payload"]["registers"][0] / DIVISOR
    if temperature > LIMIT and not above_limit:
        alert(temperature)
    elif temperature <= LIMIT and above_limit:
        log.info("%.1f C: back to the limit of %g C or below", temperature, LIMIT)
    above_limit = temperature > LIMIT
    iot.publish(topic=READINGS, payload=json.dumps({
        "temperature": temperature, "unit": "C", "limit": LIMIT, "above_limit": above_limit,
        "alerts_sent": alerts_sent}))


threading.Thread(target=poll_forever, name="poller", daemon=True).start()
